"""`taleweaver doctor` names each misconfiguration and what to do about it, and its
exit code says whether anything must be fixed."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from taleweaver.cli import doctor as doctor_checks
from taleweaver.cli.main import cli
from tests.conftest import POSTGRES_URL, need_postgres


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens once the socket is closed


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    cleared = {k: v for k, v in os.environ.items() if k.startswith("TALEWEAVER_")}
    for key in cleared:
        del os.environ[key]
    yield {"TALEWEAVER_DATA_DIR": str(tmp_path / "data"), "TALEWEAVER_MODEL": "scripted"}
    os.environ.update(cleared)


def doctor(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, ["doctor", *args], env=env, catch_exceptions=False)


def check_line(result: Result, name: str) -> str:
    """The line of the check called `name` ("FAIL  database  ...")."""
    return next(line for line in result.output.splitlines() if line[6:].startswith(name + " "))


def test_a_fresh_install_is_all_well(env: dict[str, str]) -> None:
    result = doctor(env)
    assert result.exit_code == 0, result.output
    assert "all well" in result.output
    assert "model scripted" in result.output and "FAIL" not in result.output


def test_an_unreachable_database_fails_naming_it(env: dict[str, str]) -> None:
    url = f"postgresql://taleweaver@127.0.0.1:{_closed_port()}/nowhere"
    result = doctor(env | {"TALEWEAVER_DATABASE_URL": url}, "--no-models")
    assert result.exit_code == 1, result.output
    line = check_line(result, "database")
    assert line.startswith("FAIL") and "cannot reach" in line and "/nowhere" in line
    assert "fix: check the host, port" in result.output


def test_a_malformed_database_url_fails_naming_it(env: dict[str, str]) -> None:
    result = doctor(env | {"TALEWEAVER_DATABASE_URL": "mysql://x@y/z"}, "--no-models")
    assert result.exit_code == 1, result.output
    assert "FAIL  database" in result.output and "TALEWEAVER_DATABASE_URL" in result.output


def test_a_missing_key_file_fails_naming_the_path(env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "keys" / "taleweaver.keys"
    result = doctor(env | {"TALEWEAVER_KEY_FILE": str(missing)}, "--no-models")
    assert result.exit_code == 1, result.output
    assert f"FAIL  encryption keys  the key file {missing}" in result.output
    assert "restore it from your backup" in result.output


def test_a_key_file_others_can_read_is_a_warning(env: dict[str, str], tmp_path: Path) -> None:
    keys = tmp_path / "shared.keys"
    keys.write_text("k1:" + "A" * 43 + "=\n")
    keys.chmod(0o644)
    result = doctor(env | {"TALEWEAVER_KEY_FILE": str(keys)}, "--no-models")
    assert result.exit_code == 0, result.output
    assert "WARN  encryption keys" in result.output and f"chmod 600 {keys}" in result.output


def test_an_unreachable_provider_fails_naming_the_model(env: dict[str, str]) -> None:
    provider = {
        "TALEWEAVER_MODEL": "openai",
        "TALEWEAVER_OPENAI_BASE_URL": f"http://127.0.0.1:{_closed_port()}/v1",
    }
    result = doctor(env | provider)
    assert result.exit_code == 1, result.output
    line = check_line(result, "model openai")
    assert line.startswith("FAIL") and "unreachable" in line
    assert "fix: check the provider's base URL" in result.output


def test_unreachable_redis_fails(env: dict[str, str]) -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    result = doctor(env | {"TALEWEAVER_REDIS_URL": url}, "--no-models")
    assert result.exit_code == 1, result.output
    assert "FAIL  redis" in result.output and "cannot reach" in result.output


def test_settings_that_do_not_load_exit_2_naming_the_setting(env: dict[str, str]) -> None:
    result = doctor(env | {"TALEWEAVER_MAX_BODY_BYTES": "lots"})
    assert result.exit_code == 2
    assert "max_body_bytes" in result.output


@pytest.mark.postgres
def test_a_reachable_postgresql_reports_its_schema_level(env: dict[str, str]) -> None:
    need_postgres()
    result = doctor(env | {"TALEWEAVER_DATABASE_URL": POSTGRES_URL}, "--no-models")
    line = check_line(result, "database")
    assert "reachable, schema at" in line, result.output


def test_a_data_dir_the_server_made_is_its_owners_alone(env: dict[str, str]) -> None:
    made = CliRunner().invoke(cli, ["db", "upgrade"], env=env, catch_exceptions=False)
    assert made.exit_code == 0, made.output
    result = doctor(env, "--no-models")
    assert result.exit_code == 0, result.output
    assert "WARN" not in result.output, result.output
    assert "schema at" in check_line(result, "database")


def test_a_model_that_never_answers_is_reported_with_the_model_time_limit(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A provider that takes the connection and never replies: the model check's own
    # limit (not the 10 s of the other checks) is the one that ran out.
    monkeypatch.setattr(doctor_checks, "MODEL_TIMEOUT_S", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        provider = {
            "TALEWEAVER_MODEL": "openai",
            "TALEWEAVER_OPENAI_BASE_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/v1",
        }
        result = doctor(env | provider)
    assert result.exit_code == 1, result.output
    line = check_line(result, "models")
    assert line.startswith("FAIL") and "no answer within 0.5 s" in line, line
