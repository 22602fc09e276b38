"""Every environment variable is read in `taleweaver.config`: no other module of the
package touches os.environ, each variable keeps its name, and a bad value is refused
with the variable's name, at start as well as where a feature reads it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from pydantic_settings import SettingsError

import taleweaver
from taleweaver.cli.main import cli
from taleweaver.config import (
    ENVIRONMENT_GROUPS,
    EnvironmentSettings,
    ImportLimits,
    SafetySettings,
    Settings,
    SummarySettings,
    TelemetrySettings,
    TherapySettings,
    WorldSettings,
)
from taleweaver.interop import archive
from taleweaver.interop.cards import limits as card_limits
from taleweaver.interop.limits import max_import_bytes
from taleweaver.observability import several_workers
from taleweaver.therapy.profiles import default_retention_days

PACKAGE = Path(taleweaver.__file__).parent
CONFIG = PACKAGE / "config.py"
_READERS = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_reads(source: str) -> Iterator[int]:
    """The line of every read (or write) of the process environment in `source`."""
    tree = ast.parse(source)
    aliases = {"os"}  # names `os` is bound to (`import os as system`)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "os"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in _READERS for alias in node.names):
                yield node.lineno
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in _READERS
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            yield node.lineno


def test_only_config_reads_the_environment() -> None:
    readers = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != CONFIG
        for line in environment_reads(path.read_text(encoding="utf-8"))
    ]
    assert readers == [], "read these in taleweaver/config.py and hand the value on"


@pytest.mark.parametrize(
    "source",
    [
        "import os\nos.environ.get('X')",
        "import os\nos.getenv('X')",
        "import os as system\nsystem.environ['X']",
        "from os import environ",
        "from os import getenv as read",
    ],
)
def test_the_scan_sees_each_way_of_reading_the_environment(source: str) -> None:
    assert list(environment_reads(source)) != []


def test_the_scan_leaves_other_uses_of_os_alone() -> None:
    assert list(environment_reads("import os\nos.getpid()\nos.path.join('a', 'b')")) == []


# Each variable, the settings group that reads it, and what a value becomes: the names
# are a contract with every deployment, so a rename must show up here.
VARIABLES: list[tuple[str, type[EnvironmentSettings], str, str, object]] = [
    ("TALEWEAVER_IMPORT_MAX_BYTES", ImportLimits, "import_max_bytes", "1000", 1000),
    ("TALEWEAVER_CARD_MAX_BYTES", ImportLimits, "card_max_bytes", "2000", 2000),
    ("TALEWEAVER_CARD_MAX_JSON_BYTES", ImportLimits, "card_max_json_bytes", "3000", 3000),
    ("TALEWEAVER_BUNDLE_MAX_INFLATED_BYTES", ImportLimits, "bundle_max_inflated_bytes", "4", 4),
    ("TALEWEAVER_BACKUP_MAX_INFLATED_BYTES", ImportLimits, "backup_max_inflated_bytes", "5", 5),
    ("TALEWEAVER_SAFETY_POLICY", SafetySettings, "safety_policy", "rules", "rules"),
    ("TALEWEAVER_SAFETY_RULES", SafetySettings, "safety_rules", "/r.toml", Path("/r.toml")),
    ("TALEWEAVER_SAFETY_WEBHOOK_ATTEMPTS", SafetySettings, "safety_webhook_attempts", "3", 3),
    ("TALEWEAVER_SAFETY_WEBHOOK_BACKOFF_S", SafetySettings, "safety_webhook_backoff_s", "0.5", 0.5),
    ("TALEWEAVER_THERAPY_RETENTION_DAYS", TherapySettings, "therapy_retention_days", "30", 30),
    ("TALEWEAVER_WORLD_EXTRACTION", WorldSettings, "world_extraction", "off", "off"),
    ("TALEWEAVER_WORLD_RECALL_K", WorldSettings, "world_recall_k", "7", 7),
    ("TALEWEAVER_WORLD_RECALL_HOPS", WorldSettings, "world_recall_hops", "2", 2),
    ("TALEWEAVER_WORLD_KEYWORD_COMMON", WorldSettings, "world_keyword_common", "50", 50),
    ("TALEWEAVER_WORLD_VECTOR_CACHE_MB", WorldSettings, "world_vector_cache_mb", "0", 0),
    ("TALEWEAVER_SUMMARIES", SummarySettings, "summaries", "off", False),
    ("TALEWEAVER_SUMMARY_CONCURRENCY", SummarySettings, "summary_concurrency", "4", 4),
    ("TALEWEAVER_SUMMARY_RECALL_CHARS", SummarySettings, "summary_recall_chars", "900", 900),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", TelemetrySettings, "otel_exporter_otlp_endpoint", "h", "h"),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        TelemetrySettings,
        "otel_exporter_otlp_traces_endpoint",
        "h",
        "h",
    ),
    ("OTEL_SERVICE_NAME", TelemetrySettings, "otel_service_name", "tw", "tw"),
    ("PROMETHEUS_MULTIPROC_DIR", TelemetrySettings, "prometheus_multiproc_dir", "/m", "/m"),
]


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment without any of the variables above."""
    for name, *_ in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("name", "group", "field", "raw", "value"), VARIABLES, ids=lambda v: v)
def test_each_variable_keeps_its_name(
    clean: pytest.MonkeyPatch,
    name: str,
    group: type[EnvironmentSettings],
    field: str,
    raw: str,
    value: object,
) -> None:
    clean.setenv(name, raw)
    assert getattr(group.read(), field) == value


def test_every_variable_is_listed_above() -> None:
    listed = {(group, field) for _, group, field, *_ in VARIABLES}
    assert listed == {
        (group, field) for group in ENVIRONMENT_GROUPS for field in group.model_fields
    }


def test_an_empty_variable_counts_as_unset(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("TALEWEAVER_IMPORT_MAX_BYTES", "")
    clean.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    assert ImportLimits.read().import_max_bytes == 64 * 1024 * 1024
    assert not several_workers()


def test_features_read_the_value_when_they_ask(clean: pytest.MonkeyPatch) -> None:
    assert max_import_bytes() == 64 * 1024 * 1024
    assert default_retention_days() == 365
    clean.setenv("TALEWEAVER_IMPORT_MAX_BYTES", "1000")
    clean.setenv("TALEWEAVER_CARD_MAX_BYTES", "2000")
    clean.setenv("TALEWEAVER_CARD_MAX_JSON_BYTES", "3000")
    clean.setenv("TALEWEAVER_BUNDLE_MAX_INFLATED_BYTES", "4000")
    clean.setenv("TALEWEAVER_BACKUP_MAX_INFLATED_BYTES", "5000")
    clean.setenv("TALEWEAVER_THERAPY_RETENTION_DAYS", "30")
    clean.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/metrics")
    assert max_import_bytes() == 1000
    assert card_limits.max_file_bytes() == 2000
    assert card_limits.max_json_bytes() == 3000
    assert archive.bundle_limits().max_total_bytes == 4000
    assert archive.backup_limits().max_total_bytes == 5000
    assert default_retention_days() == 30
    assert several_workers()


@pytest.mark.parametrize(
    ("name", "raw", "why"),
    [
        ("TALEWEAVER_IMPORT_MAX_BYTES", "lots", "valid integer"),
        ("TALEWEAVER_CARD_MAX_BYTES", "0", "greater than 0"),
        ("TALEWEAVER_BUNDLE_MAX_INFLATED_BYTES", "-1", "greater than 0"),
        ("TALEWEAVER_SAFETY_WEBHOOK_ATTEMPTS", "0", "greater than 0"),
        ("TALEWEAVER_SAFETY_WEBHOOK_BACKOFF_S", "-1", "greater than or equal to 0"),
        ("TALEWEAVER_THERAPY_RETENTION_DAYS", "4000", "less than or equal to 3650"),
        ("TALEWEAVER_WORLD_EXTRACTION", "sometimes", "'auto', 'model', 'heuristic' or 'off'"),
        ("TALEWEAVER_WORLD_RECALL_K", "ten", "valid integer"),
        ("TALEWEAVER_WORLD_KEYWORD_COMMON", "0", "greater than 0"),
        ("TALEWEAVER_WORLD_VECTOR_CACHE_MB", "-5", "greater than or equal to 0"),
        ("TALEWEAVER_SUMMARY_RECALL_CHARS", "10", "greater than or equal to 200"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_and_the_value(
    clean: pytest.MonkeyPatch, name: str, raw: str, why: str
) -> None:
    clean.setenv(name, raw)
    group = next(g for v, g, *_ in VARIABLES if v == name)
    with pytest.raises(SettingsError) as refused:
        group.read()
    assert f"{name}={raw!r}" in str(refused.value)
    assert why in str(refused.value)


def test_every_bad_variable_of_a_group_is_named_at_once(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("TALEWEAVER_WORLD_RECALL_K", "ten")
    clean.setenv("TALEWEAVER_WORLD_RECALL_HOPS", "-1")
    with pytest.raises(
        SettingsError, match=r"TALEWEAVER_WORLD_RECALL_K=.*TALEWEAVER_WORLD_RECALL_HOPS="
    ):
        WorldSettings.read()


def test_settings_refuse_a_bad_variable_at_start(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("TALEWEAVER_SUMMARY_CONCURRENCY", "100")
    with pytest.raises(ValidationError, match="TALEWEAVER_SUMMARY_CONCURRENCY='100'"):
        Settings()


def test_the_cli_reports_a_bad_variable_as_a_configuration_error(
    clean: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli,
        ["db", "upgrade"],
        env={"TALEWEAVER_DATA_DIR": str(tmp_path), "TALEWEAVER_WORLD_RECALL_K": "ten"},
    )
    assert result.exit_code == 2
    assert "configuration error" in result.output
    assert "TALEWEAVER_WORLD_RECALL_K='ten'" in result.output
