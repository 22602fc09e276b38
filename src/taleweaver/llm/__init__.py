"""Models the pipeline calls: adapters for every backend users run, and the router
in front of them (fallbacks, retries, breakers, deadlines, accounting, budgets)."""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
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

# Each name's module, imported on first use: the providers bring httpx, numpy and
# their SDKs, which a CLI command that only lists or exports never needs.
_MODULES = {
    "AnthropicModel": "taleweaver.llm.anthropic",
    "BoundModel": "taleweaver.llm.router",
    "BudgetStatus": "taleweaver.llm.budgets",
    "Budgets": "taleweaver.llm.budgets",
    "CallScope": "taleweaver.llm.routing",
    "ChatBackend": "taleweaver.llm.base",
    "ChatModel": "taleweaver.llm.base",
    "Completion": "taleweaver.llm.routing",
    "EmbeddedModel": "taleweaver.llm.embedded",
    "Embedder": "taleweaver.llm.base",
    "HashingEmbedder": "taleweaver.llm.hashing",
    "ModelCatalog": "taleweaver.llm.config",
    "ModelRouter": "taleweaver.llm.router",
    "OllamaEmbeddings": "taleweaver.llm.ollama",
    "OllamaModel": "taleweaver.llm.ollama",
    "OpenAICompatibleModel": "taleweaver.llm.openai_compat",
    "OpenAIEmbeddings": "taleweaver.llm.openai_compat",
    "ScriptedModel": "taleweaver.llm.scripted",
    "SentenceEmbedder": "taleweaver.llm.sentence",
    "SentenceEncoder": "taleweaver.llm.sentence",
    "TASKS": "taleweaver.llm.types",
    "Task": "taleweaver.llm.types",
    "TextCompletionModel": "taleweaver.llm.text_completion",
    "UsageLedger": "taleweaver.llm.ledger",
    "Vector": "taleweaver.llm.sentence",
    "as_backend": "taleweaver.llm.base",
    "build_router": "taleweaver.llm.build",
    "shared_sentence_encoder": "taleweaver.llm.sentence",
    "task_model": "taleweaver.llm.router",
}


def __getattr__(name: str) -> object:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value
