"""Models the pipeline calls: the embedded local model, the scripted model, providers."""

from taleweaver.llm.base import ChatModel
from taleweaver.llm.embedded import EmbeddedModel
from taleweaver.llm.openai_compat import OpenAICompatibleModel
from taleweaver.llm.scripted import ScriptedModel

__all__ = ["ChatModel", "EmbeddedModel", "OpenAICompatibleModel", "ScriptedModel"]
