"""Model configuration: a TOML file, environment variables over it, the older
single-model variables, checks at start-up with clear messages, and the
`taleweaver models list/test` commands."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from pydantic_settings import SettingsError

from taleweaver.cli.main import cli
from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput
from taleweaver.engine.models import catalog_from_settings
from taleweaver.llm import build_router
from taleweaver.llm.build import PROVIDER_KINDS
from taleweaver.llm.config import ProviderKind
from tests.loopback_models import SECRET, ModelServer, Reply, serving

TOML = """
[providers.local]
kind = "ollama"
base_url = "{ollama}"
keep_alive = "10m"

[providers.cloud]
kind = "openai"
base_url = "{openai}"
api_key = "{secret}"

[models.narrator]
provider = "cloud"
model = "gpt-4o"
price = {{ input = 2.5, output = 10 }}

[models.cheap]
provider = "local"
model = "llama3.1:8b"
options = {{ num_ctx = 8192 }}

[routes]
narrate = ["narrator", "cheap"]
extract = "cheap"

[router.timeouts]
first_token = 20

[budgets]
session_usd = 0.5
"""


def write(
    tmp_path: Path,
    text: str,
    ollama: str = "http://127.0.0.1:11434",
    openai: str = "https://api.example.invalid/v1",
) -> Path:
    path = tmp_path / "taleweaver.toml"
    path.write_text(textwrap.dedent(text).format(ollama=ollama, openai=openai, secret=SECRET))
    return path


def test_a_toml_file_configures_providers_models_routes_and_budgets(tmp_path: Path) -> None:
    settings = Settings(config=write(tmp_path, TOML))
    assert settings.resolved_model() == "configured"
    assert settings.providers["local"].keep_alive == "10m"
    assert settings.models["narrator"].price.output == 10
    assert settings.routes.narrate == ["narrator", "cheap"]
    assert settings.routes.extract == ["cheap"]
    assert settings.router.timeouts.first_token == 20
    assert settings.router.timeouts.idle == 60  # the default stands where unset
    assert settings.budgets.session_usd == 0.5


def test_the_file_can_be_named_in_the_environment_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALEWEAVER_CONFIG", str(write(tmp_path, TOML)))
    monkeypatch.setenv("TALEWEAVER_PROVIDERS__CLOUD__API_KEY", "sk-from-the-environment")
    monkeypatch.setenv("TALEWEAVER_BUDGETS__SESSION_USD", "2")
    settings = Settings()
    key = settings.providers["cloud"].api_key
    assert key is not None and key.get_secret_value() == "sk-from-the-environment"
    assert settings.providers["cloud"].kind == "openai"  # the rest of the file still holds
    assert settings.budgets.session_usd == 2


def test_secrets_do_not_show_in_the_settings_repr(tmp_path: Path) -> None:
    settings = Settings(config=write(tmp_path, TOML))
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())


async def test_the_older_single_model_variables_still_select_one_model(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, openai_base_url="http://127.0.0.1:9/v1", openai_model="mistral"
    )
    catalog = catalog_from_settings(settings)
    assert list(catalog.models) == ["openai"]
    router = build_router(catalog)
    try:
        assert router.name == "openai:mistral"
        assert [m.alias for m in router.chain("extract")] == ["openai"]
    finally:
        await router.aclose()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[models.a]\nprovider = "nowhere"\nmodel = "m"\n',
            "models.a.provider: 'nowhere' is not a configured provider",
        ),
        (
            '[providers.p]\nkind = "openai"\n[models.a]\nprovider = "p"\nmodel = "m"\n'
            '[routes]\nnarrate = ["b"]\n',
            "routes.narrate: 'b' is not a configured model (configured: a)",
        ),
        (
            '[providers.p]\nkind = "anthropic"\n[models.a]\nprovider = "p"\nmodel = "m"\n'
            '[routes]\nembed = ["a"]\n',
            "routes.embed: 'a' is on provider 'p' (anthropic), which has no embeddings endpoint",
        ),
        (
            '[providers.p]\nkind = "ollama"\n[models.a]\nprovider = "p"\nmodel = "m"\n'
            'template = "chatml"\n',
            "models.a.template: instruct templates need an OpenAI-compatible",
        ),
        (
            '[providers.p]\nkind = "ollama"\n[models.a]\nprovider = "p"\n',
            "models.a.model: give the ollama provider's id for it",
        ),
        (
            '[providers.p]\nkind = "openai"\nbase_url = "localhost:8080"\n',
            "providers.p.base_url: 'localhost:8080' is not an http(s) URL",
        ),
        ('[providers.p]\nkind = "Open AI"\n', "String should match pattern"),
        ('[providers.p]\nkind = "ollama"\nkeepalive = "5m"\n', "Extra inputs are not permitted"),
        ("[budgets]\nwarn_at = 2\n", "less than or equal to 1"),
    ],
)
def test_an_inconsistent_configuration_is_refused_at_start_up_saying_what_is_wrong(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings(config=write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[provider.p]\nkind = 'openai'\n",
            "'provider' is not a setting (did you mean 'providers'?)",
        ),
        ("[providers.p\n", "is not valid TOML"),
    ],
)
def test_a_file_that_is_not_settings_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings(config=write(tmp_path, text))


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="which does not exist"):
        Settings(config=tmp_path / "missing.toml")


# --- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[list[ModelServer]]:
    with serving(2) as apps:
        yield apps


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["models", *args], env={"TALEWEAVER_CONFIG": str(config)})
    return result.exit_code, result.output


def test_models_list_shows_models_prices_and_routes(tmp_path: Path) -> None:
    code, output = run(write(tmp_path, TOML), "list")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].split() == ["ALIAS", "PROVIDER", "MODEL", "$/MTOK", "IN/OUT", "TASKS"]
    assert lines[1].split()[:5] == ["narrator", "cloud", "(openai)", "gpt-4o", "2.5/10"]
    assert "narrate    narrator -> cheap" in output
    assert "extract    cheap" in output
    assert SECRET not in output


def test_models_test_asks_each_model_and_fails_when_one_does_not_answer(
    tmp_path: Path, servers: list[ModelServer]
) -> None:
    ollama, openai = servers
    ollama.then(Reply(pieces=("Ready.",)))
    openai.then(Reply(status=401, message=f"bad key {SECRET}"))
    config = write(tmp_path, TOML, ollama=ollama.url("ollama"), openai=openai.url("openai"))
    code, output = run(config, "test")
    assert code == 1
    cheap = next(line for line in output.splitlines() if line.startswith("cheap"))
    narrator = next(line for line in output.splitlines() if line.startswith("narrator"))
    assert "ok" in cheap and "'Ready.'" in cheap and "first token" in cheap
    assert "FAILED" in narrator and "rejected the credentials" in narrator
    assert SECRET not in output

    code, output = run(config, "test", "cheap")
    assert code == 0 and output.startswith("cheap")


def test_models_test_names_an_unknown_model(tmp_path: Path) -> None:
    code, output = run(write(tmp_path, TOML), "test", "gpt-17")
    assert code == 1
    assert "no model is called 'gpt-17'" in output


def test_a_bad_configuration_stops_the_cli_with_the_problem(tmp_path: Path) -> None:
    code, output = run(write(tmp_path, '[models.a]\nprovider = "x"\nmodel = "m"\n'), "list")
    assert code == 2
    assert "configuration error" in output
    assert "models.a.provider: 'x' is not a configured provider" in output


def test_the_readme_example_is_a_valid_configuration(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    example = readme.split("```toml\n# taleweaver.toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "taleweaver.toml"
    path.write_text(example)
    settings = Settings(config=path)
    catalog = catalog_from_settings(settings)
    assert catalog.routes.narrate == ["narrator", "backup", "cheap"]
    assert catalog.models["base"].template == "alpaca"
    assert catalog.budgets.workspace_usd == 25


def test_every_built_in_provider_kind_has_a_builder() -> None:
    assert set(get_args(ProviderKind)) <= set(PROVIDER_KINDS)


def test_an_unknown_provider_kind_is_refused_when_the_router_is_built(tmp_path: Path) -> None:
    """Plugins add kinds, so the settings take any kind's name; building the router
    (at start-up, in `models list`, in doctor) refuses one nothing registered."""
    settings = Settings(
        config=write(tmp_path, '[providers.p]\nkind = "openia"\n[models.a]\nprovider = "p"\n')
    )
    said = (
        "providers.p.kind: 'openia' is no provider kind (did you mean 'openai'?); built in: "
        "anthropic, embedded, ollama, openai, scripted; added by installed plugins: none"
    )
    with pytest.raises(InvalidInput, match=re.escape(said)):
        build_router(catalog_from_settings(settings))
