"""Choosing the narrator's model from settings."""

from __future__ import annotations

from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput
from taleweaver.llm import ChatModel, EmbeddedModel, OpenAICompatibleModel, ScriptedModel


def model_from_settings(settings: Settings) -> ChatModel:
    choice = settings.resolved_model()
    if choice == "scripted":
        return ScriptedModel(token_delay=settings.scripted_token_delay_ms / 1000)
    if choice == "openai":
        if not settings.openai_base_url:
            raise InvalidInput(
                "TALEWEAVER_MODEL=openai needs TALEWEAVER_OPENAI_BASE_URL "
                "(for example http://127.0.0.1:11434/v1 for Ollama)"
            )
        return OpenAICompatibleModel(
            base_url=settings.openai_base_url,
            model=settings.openai_model,
            api_key=settings.openai_api_key,
        )
    return EmbeddedModel()
