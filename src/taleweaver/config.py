"""Settings, read once from the environment (TALEWEAVER_*) and the TOML file that
TALEWEAVER_CONFIG names; code never reads os.environ."""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
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
