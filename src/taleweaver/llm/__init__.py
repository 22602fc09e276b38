"""Models the pipeline calls: adapters for every backend users run, and the router
in front of them (fallbacks, retries, breakers, deadlines, accounting, budgets)."""

from taleweaver.llm.anthropic import AnthropicModel
from taleweaver.llm.base import ChatBackend, ChatModel, Embedder, as_backend
from taleweaver.llm.budgets import Budgets, BudgetStatus
from taleweaver.llm.build import build_router
from taleweaver.llm.config import ModelCatalog
from taleweaver.llm.embedded import EmbeddedModel
from taleweaver.llm.hashing import HashingEmbedder
from taleweaver.llm.ledger import UsageLedger
from taleweaver.llm.ollama import OllamaEmbeddings, OllamaModel
from taleweaver.llm.openai_compat import OpenAICompatibleModel, OpenAIEmbeddings
from taleweaver.llm.router import BoundModel, ModelRouter, task_model
from taleweaver.llm.routing import CallScope, Completion
from taleweaver.llm.scripted import ScriptedModel
from taleweaver.llm.sentence import (
    SentenceEmbedder,
    SentenceEncoder,
    Vector,
    shared_sentence_encoder,
)
from taleweaver.llm.text_completion import TextCompletionModel
from taleweaver.llm.types import TASKS, Task

__all__ = [
    "TASKS",
    "AnthropicModel",
    "BoundModel",
    "BudgetStatus",
    "Budgets",
    "CallScope",
    "ChatBackend",
    "ChatModel",
    "Completion",
    "EmbeddedModel",
    "Embedder",
    "HashingEmbedder",
    "ModelCatalog",
    "ModelRouter",
    "OllamaEmbeddings",
    "OllamaModel",
    "OpenAICompatibleModel",
    "OpenAIEmbeddings",
    "ScriptedModel",
    "SentenceEmbedder",
    "SentenceEncoder",
    "Task",
    "TextCompletionModel",
    "UsageLedger",
    "Vector",
    "as_backend",
    "build_router",
    "shared_sentence_encoder",
    "task_model",
]
