"""Settings, read once from the environment (TALEWEAVER_*); code never reads os.environ."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ModelChoice = Literal["scripted", "embedded", "openai"]


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "taleweaver"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALEWEAVER_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    # Unset: an OpenAI-compatible provider when a base URL is given, else the
    # bundled local model.
    model: ModelChoice | None = None
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str = "gpt-4o-mini"
    scripted_token_delay_ms: float = 10.0
    max_reply_tokens: int = 400
    history_messages: int = 40
    auto_migrate: bool = True
    max_body_bytes: int = 64 * 1024
    log_level: str = "INFO"
    # Access: with a loopback bind and at most one account no login is asked for.
    bind_host: str = "127.0.0.1"
    require_login: bool = False
    cors_origins: list[str] = Field(default_factory=list)
    rate_limit: str = "600/minute"  # per user (or client address) and route
    login_rate_limit: str = "10/minute"  # per client address
    redis_url: str | None = None  # rate-limit counters shared across replicas

    def resolved_model(self) -> ModelChoice:
        if self.model is not None:
            return self.model
        return "openai" if self.openai_base_url else "embedded"
