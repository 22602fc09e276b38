"""Base models on an OpenAI-compatible text-completion endpoint (`/completions`),
the chat rendered through an instruct template."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import httpx

from taleweaver.domain.prompt import ChatMessage
from taleweaver.llm.openai_compat import OpenAIServerModel
from taleweaver.llm.openai_sse import openai_stream, pick_text
from taleweaver.llm.templates import TEMPLATES, InstructTemplate, StopTrimmer
from taleweaver.llm.types import Finish, StreamItem

__all__ = ["TextCompletionModel"]


class TextCompletionModel(OpenAIServerModel):
    """A base model on `/completions`, its chat rendered through an instruct template."""

    name_prefix = "openai-text"

    def __init__(
        self,
        *,
        model: str,
        template: InstructTemplate | str,
        base_url: str | None = None,
        api_key: str | None = None,
        client: httpx.AsyncClient | None = None,
        secrets: Sequence[str] = (),
        name: str | None = None,
        include_usage: bool = False,
        temperature: float | None = None,
        options: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.template = TEMPLATES[template] if isinstance(template, str) else template
        super().__init__(
            model=model,
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            client=client,
            secrets=secrets,
            name=name,
            include_usage=include_usage,
            temperature=temperature,
            options=options,
        )

    async def generate(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[StreamItem]:
        body: dict[str, Any] = {
            **self._options,
            "model": self.model,
            "prompt": self.template.render(messages),
            "max_tokens": max_tokens,
            "stream": True,
            "stop": list(self.template.stop),
        }
        if self._temperature is not None:
            body["temperature"] = self._temperature
        if self._include_usage:
            body["stream_options"] = {"include_usage": True}
        trimmer = StopTrimmer(self.template.stop)
        items = openai_stream(
            self._client, "completions", body, name=self.name, secrets=self._secrets, pick=pick_text
        )
        async with aclosing(items):
            async for item in items:
                if type(item) is str:
                    text = trimmer.feed(item)
                    if text:
                        yield text
                    if trimmer.stopped:  # the model began a new turn: the reply is over
                        yield Finish("stop")
                        return
                elif type(item) is Finish:
                    rest = trimmer.flush()
                    if rest:
                        yield rest
                    yield item
                else:
                    yield item
