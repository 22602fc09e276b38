"""Settings, read once from the environment (TALEWEAVER_*) and the TOML file that
TALEWEAVER_CONFIG names; code never reads os.environ.

Below `Settings`, each feature's environment-only settings (limits, safety, world
memory...), read afresh when the feature asks (`read()`), so that a value changed
between two uses is the one the second use gets; `Settings` reads them all once
too, so that a bad value stops the process at its start, naming the variable.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from taleweaver.llm.config import (
    BudgetSettings,
    ModelSettings,
    ProviderSettings,
    RouterSettings,
    RouteSettings,
    catalog_problems,
)

# "configured": the providers, models and routes below (the TOML file).
ModelChoice = Literal["scripted", "embedded", "openai", "configured"]
# Workspace roles a single sign-on claim may grant: never "owner", which only an
# owner hands out (taleweaver.auth.Role names the same values).
ClaimRole = Literal["admin", "editor", "reviewer", "player", "therapist", "viewer"]


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "taleweaver"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TALEWEAVER_", env_nested_delimiter="__", extra="ignore"
    )

    # A TOML file with any of these settings; the environment overrides it.
    config: Path | None = None
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    # Unset: the configured models when there are any, else an OpenAI-compatible
    # provider when a base URL is given, else the bundled local model.
    model: ModelChoice | None = None
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str = "gpt-4o-mini"
    scripted_token_delay_ms: float = 10.0
    # Models and providers ([providers.NAME], [models.ALIAS], [routes], [router],
    # [budgets] in the TOML file; TALEWEAVER_PROVIDERS__NAME__API_KEY and so on).
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    routes: RouteSettings = Field(default_factory=RouteSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    max_reply_tokens: int = 400
    history_messages: int = 40
    auto_migrate: bool = True
    max_body_bytes: int = 64 * 1024
    # Uploads (POST .../import: cards, chats, lorebooks, worlds, bundles); each
    # importer enforces its own, tighter limits per format on top of this.
    max_upload_bytes: int = 64 * 1024 * 1024
    log_level: str = "INFO"
    # Prometheus metrics at /metrics (TALEWEAVER_METRICS=false: nothing is counted).
    metrics: bool = True
    # Unexpected errors to a Sentry-compatible server, redacted (docs/operations.md).
    sentry_dsn: SecretStr | None = None
    sentry_environment: str | None = None
    # Access: with a loopback bind and at most one account no login is asked for.
    bind_host: str = "127.0.0.1"
    require_login: bool = False
    cors_origins: list[str] = Field(default_factory=list)
    # Plugins the server must not start without, by entry-point name (docs/plugins.md);
    # any other plugin that fails is reported and left out.
    required_plugins: list[str] = Field(default_factory=list)
    rate_limit: str = "600/minute"  # per user (or client address) and route
    login_rate_limit: str = "10/minute"  # per client address
    redis_url: str | None = None  # rate-limit counters shared across replicas
    redis_key_prefix: str = "taleweaver"  # keeps instances sharing one Redis apart
    # The live channel (/api/v1/sessions/{id}/live): a ping every so often, a client
    # silent for longer than `live_dead_after_seconds` dropped, and the event log
    # polled at least this often in case a wake-up was lost.
    live_ping_seconds: float = 15.0
    live_dead_after_seconds: float = 45.0
    live_poll_seconds: float = 1.0
    # Background jobs (taleweaver.jobs): on Redis when `redis_url` is set, else in
    # process. How many run at once per replica; how long a run may go unrenewed
    # before another replica takes it over; how often each replica looks for due
    # retries; the first retry's wait (doubling, to at most the cap); runs per job.
    job_concurrency: int = Field(default=4, ge=1)
    job_lease_seconds: float = Field(default=30.0, gt=0)
    job_poll_seconds: float = Field(default=1.0, gt=0)
    job_retry_seconds: float = Field(default=2.0, ge=0)
    job_retry_cap_seconds: float = Field(default=300.0, ge=0)
    job_max_attempts: int = Field(default=3, ge=1)
    # Terminal sessions (a command on a pseudo-terminal, run as the server's user): off
    # unless enabled, and on a bind other than loopback only if allowed there too.
    # Instance administrators only, unless workspace owners and admins may as well
    # (anyone who may create a workspace owns one). The command (empty: the server
    # user's login shell, else /bin/sh) runs in the workspace's folder under the data
    # directory; the last terminal_retention_bytes of each one's output are kept.
    terminal_enabled: bool = False
    terminal_allow_remote: bool = False
    terminal_workspace_admins: bool = False
    terminal_command: list[str] = Field(default_factory=list)
    terminal_retention_bytes: int = Field(default=256 * 1024, ge=4096)
    terminal_max_open: int = Field(default=8, ge=1)
    # File-editor sessions: the largest text file one may hold.
    file_max_bytes: int = Field(default=1024 * 1024, ge=1)
    # How browsers reach this server (e.g. behind a proxy); unset: each request's own URL.
    public_url: str | None = None
    # Single sign-on with OpenID Connect: on when both an issuer and a client id are set.
    oidc_issuer: str | None = None  # discovery at {issuer}/.well-known/openid-configuration
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None  # unset: a public client, PKCE only
    oidc_scopes: str = "openid email profile"
    oidc_role_claim: str | None = None  # e.g. "groups"
    # Claim value -> role in `oidc_workspace`; the first entry the user has wins.
    oidc_role_map: dict[str, ClaimRole] = Field(default_factory=dict)
    oidc_workspace: str = "local"
    oidc_auto_create: bool = True  # create an account on a first sign-in
    # Encryption at rest (provider keys, sensitive workspaces): "kid:base64key,...",
    # primary first; or a key file of such lines. Neither: on SQLite a key file in
    # the data dir is made on first need; PostgreSQL needs one of them.
    encryption_keys: SecretStr | None = None
    key_file: Path | None = None

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _TomlFile(settings_cls)
        return init_settings, env_settings, dotenv_settings, toml, file_secret_settings

    @model_validator(mode="after")
    def _models_fit_together(self) -> Settings:
        problems = catalog_problems(self.providers, self.models, self.routes)
        if problems:
            raise ValueError("the models do not fit together:\n- " + "\n- ".join(problems))
        return self

    @model_validator(mode="after")
    def _environment_is_readable(self) -> Settings:
        for group in ENVIRONMENT_GROUPS:
            group.read()  # SettingsError (a ValueError) naming each bad variable
        return self

    def resolved_model(self) -> ModelChoice:
        if self.model is not None:
            return self.model
        if self.models:
            return "configured"
        return "openai" if self.openai_base_url else "embedded"


class _TomlFile(PydanticBaseSettingsSource):
    """The TOML file named by TALEWEAVER_CONFIG (or `Settings(config=...)`)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # the whole file is read at once, in __call__

    def __call__(self) -> dict[str, Any]:
        named = self.current_state.get("config")
        if not named:
            return {}
        path = Path(named).expanduser()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SettingsError(f"TALEWEAVER_CONFIG names {path}, which does not exist") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"could not read {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path} is not valid TOML: {exc}") from exc
        known = set(self.settings_cls.model_fields)
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SettingsError(f"{path}: {key!r} is not a setting{hint}")
        return data


MiB = 1024 * 1024
GiB = 1024 * MiB
MAX_RETENTION_DAYS = 3650  # a therapy profile's, whether its own or the default


class EnvironmentSettings(BaseSettings):
    """Settings from the environment alone (no TOML file), each field the variable
    named by the prefix and the field's name in capitals; empty counts as unset."""

    model_config = SettingsConfigDict(
        env_prefix="TALEWEAVER_", extra="ignore", env_ignore_empty=True, frozen=True
    )

    @classmethod
    def read(cls) -> Self:
        """The settings as the environment has them now; `SettingsError` naming every
        variable whose value does not fit, and why."""
        try:
            return cls()
        except ValidationError as exc:
            prefix = cls.model_config.get("env_prefix", "")
            problems = []
            for error in exc.errors():
                name = f"{prefix}{'.'.join(str(part) for part in error['loc'])}".upper()
                problems.append(f"{name}={error['input']!r}: {error['msg']}")
            raise SettingsError("; ".join(problems)) from None


class ImportLimits(EnvironmentSettings):
    """How large an imported file, card or archive may be, in bytes."""

    import_max_bytes: PositiveInt = 64 * MiB  # one imported file, over HTTP or the CLI
    card_max_bytes: PositiveInt = 20 * MiB  # one card file, or one file inside a CHARX
    card_max_json_bytes: PositiveInt = 8 * MiB  # a card's JSON text
    bundle_max_inflated_bytes: PositiveInt = 256 * MiB  # a workspace bundle, unzipped
    backup_max_inflated_bytes: PositiveInt = 64 * GiB  # a backup, unzipped


class SafetySettings(EnvironmentSettings):
    # How rules, learned detector and judge combine (safety/policy.py parses it);
    # unset: decided by whether a model is routed to the safety task.
    safety_policy: str | None = None
    safety_rules: Path | None = None  # a rules file instead of the shipped one
    safety_webhook_attempts: PositiveInt = 5
    safety_webhook_backoff_s: NonNegativeFloat = 1.0  # doubled after each failed attempt


class TherapySettings(EnvironmentSettings):
    # How long a player's records are kept, for profiles that do not set their own.
    therapy_retention_days: Annotated[int, Field(ge=1, le=MAX_RETENTION_DAYS)] = 365


class WorldSettings(EnvironmentSettings):
    # auto: the model unless the extract route is the bundled local model.
    world_extraction: Literal["auto", "model", "heuristic", "off"] = "auto"
    world_recall_k: NonNegativeInt = 10  # entities recalled per turn
    world_recall_hops: NonNegativeInt = 1
    world_keyword_common: PositiveInt = 1000  # a word matching this many entities is common
    world_vector_cache_mb: NonNegativeInt = 512


class SummarySettings(EnvironmentSettings):
    summaries: bool = True  # off: no new summaries (recall still uses those there are)
    summary_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    summary_recall_chars: Annotated[int, Field(ge=200, le=100_000)] = 3000


class TelemetrySettings(EnvironmentSettings):
    """The standard variables of OpenTelemetry and prometheus-client that Taleweaver
    itself looks at too (the libraries read these and the rest themselves)."""

    model_config = SettingsConfigDict(env_prefix="")

    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_traces_endpoint: str | None = None
    otel_service_name: str | None = None
    # Set: several worker processes share one metrics exposition through this folder.
    prometheus_multiproc_dir: str | None = None


ENVIRONMENT_GROUPS: tuple[type[EnvironmentSettings], ...] = (
    ImportLimits,
    SafetySettings,
    TherapySettings,
    WorldSettings,
    SummarySettings,
    TelemetrySettings,
)


def host_environment(names: Iterable[str]) -> dict[str, str]:
    """Those of the named variables the server's own environment sets (what a
    terminal's shell is given of it: PATH, HOME, the locale, never a secret)."""
    return {name: os.environ[name] for name in names if name in os.environ}
