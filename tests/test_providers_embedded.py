"""The bundled model as a configured provider, behind the router like any other."""

from __future__ import annotations

from pathlib import Path

import pytest

from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm.small_model import CHOICES_TOKENS
from tests.conftest import META
from tests.loopback_models import make_settings

pytestmark = pytest.mark.embedded_model


async def test_a_story_runs_on_the_embedded_model_through_the_router(tmp_path: Path) -> None:
    settings = make_settings(
        data_dir=tmp_path,
        providers={"local": {"kind": "embedded", "context_tokens": 1024}},
        models={"smol": {"provider": "local", "temperature": 0}},
        max_reply_tokens=24,
    )
    engine = await Engine.open(settings)
    try:
        assert (await engine.model_readiness())["status"] == "ok"
        created = await engine.sessions.create(
            "local", kind=SessionKind.STORY, title="The Lighthouse", metadata=META
        )
        request = TurnRequest.build(action=None, text="I climb the stairs", choice=None)
        turn = await (await engine.turns.start("local", created["id"], request, META)).wait()
        usage = await engine.usage.totals("local", session_id=created["id"])
    finally:
        await engine.close()
    assert turn["status"] == "completed"
    assert turn["model"] == "local:SmolLM2-135M-Instruct"
    assert turn["reply"]["text"]
    # llama.cpp's own counts: every streamed piece is one sampled token; the prose
    # keeps to the cap and the choices after it have their own few tokens.
    assert usage.completion_tokens == turn["tokens"] <= 24 + CHOICES_TOKENS
    assert usage.prompt_tokens > 50
