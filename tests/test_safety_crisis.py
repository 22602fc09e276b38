"""The crisis protocol end to end in the engine: pause, support, flag, audit, webhook;
content rules on the narrator's output; the model classifier and its policies."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from taleweaver.auth import Role
from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.pipeline import RecallQuery
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionFilter, SessionKind
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.safety.classifier import ModelClassifier, parse_verdict
from taleweaver.safety.policy import Policy
from taleweaver.safety.protocol import CrisisSignal
from taleweaver.safety.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, Webhooks, verify

STORY = "The hall is quiet.\n\nChoices:\n1. Go left\n2. Go right\n"
CRISIS = "honestly I don't see the point of going on, everyone would be better off without me"


# --- a real HTTP receiver on loopback that checks each delivery's signature ----------


@dataclass
class Receiver:
    """Therapist's endpoint: records each request; fails the first `fail_first` ones."""

    fail_first: int = 0
    secret: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def handle(self, headers: Any, body: bytes) -> int:
        self.received.append({"headers": dict(headers), "body": body})
        if len(self.received) <= self.fail_first:
            return 500
        ok = verify(self.secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
        return 204 if ok else 401

    def valid(self) -> list[dict[str, Any]]:
        return [
            json.loads(r["body"])
            for r in self.received
            if verify(
                self.secret,
                r["headers"][TIMESTAMP_HEADER],
                r["body"],
                r["headers"][SIGNATURE_HEADER],
            )
        ]


def serve_receiver() -> Iterator[Receiver]:
    """A receiver listening on loopback until the generator is closed."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(state.handle(self.headers, body))
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/crisis"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve_receiver()


# --- a clinic: a workspace with a player and their assigned therapist -----------------


@dataclass
class Clinic:
    engine: Engine
    workspace: str
    player: str
    therapist: str

    async def session(self, kind: SessionKind = SessionKind.STORY, **settings: Any) -> str:
        created = await self.engine.sessions.create(
            self.workspace,
            kind=kind,
            title="Therapy",
            settings=settings,
            owner_id=self.player,
            metadata=EventMetadata(actor=self.player),
        )
        return str(created["id"])

    async def turn(self, session_id: str, request: TurnRequest) -> dict[str, Any]:
        handle = await self.engine.turns.start(
            self.workspace, session_id, request, EventMetadata(actor=self.player)
        )
        return await handle.wait()


async def open_clinic(engine: Engine, tag: str = "") -> Clinic:
    accounts = engine.accounts
    owner = await accounts.create_user(f"owner{tag}@clinic.test", password=None)
    ws = (await accounts.create_workspace(owner["id"], "Clinic", sensitive=False))["id"]
    player = await accounts.create_user(f"p{tag}@clinic.test", password=None)
    therapist = await accounts.create_user(f"t{tag}@clinic.test", password=None)
    await accounts.set_member(ws, player["id"], Role.PLAYER, actor="t", actor_role=Role.OWNER)
    await accounts.set_member(ws, therapist["id"], Role.THERAPIST, actor="t", actor_role=Role.OWNER)
    await accounts.assign(ws, therapist["id"], player["id"], actor="t")
    return Clinic(engine, ws, player["id"], therapist["id"])


def say(text: str) -> TurnRequest:
    return TurnRequest.build(action=None, text=text, choice=None)


@pytest.fixture
async def clinic(make_engine: Callable[..., Any]) -> Clinic:
    engine: Engine = await make_engine(ScriptedModel([STORY]))
    return await open_clinic(engine)


async def fast_webhooks(engine: Engine) -> Webhooks:
    hooks = Webhooks(engine.db, keys=engine.safety.webhooks.keys, attempts=3, backoff_s=0.01)
    engine.safety.webhooks = hooks
    engine.safety.crisis.webhooks = hooks
    return hooks


# --- the protocol ------------------------------------------------------------------------


async def test_a_crisis_message_pauses_the_story_and_runs_the_whole_protocol(
    clinic: Clinic, receiver: Receiver
) -> None:
    engine = clinic.engine
    hooks = await fast_webhooks(engine)
    receiver.secret = (await hooks.register(clinic.workspace, clinic.therapist, receiver.url))[
        "secret"
    ]
    sid = await clinic.session()
    model = ScriptedModel([STORY])
    engine.caps.model = model

    turn = await clinic.turn(sid, say(CRISIS))

    assert turn["safety"] == {
        "level": "blocked",
        "crisis": True,
        "crisis_level": "moderate",
        "categories": ["suicidal_ideation"],
        "action": "crisis_protocol",
    }
    assert model.calls == []  # the narrator never saw it
    assert "you don't have to face it alone" in turn["reply"]["text"]
    assert "findahelpline.com" in turn["reply"]["text"]
    [flag] = await engine.safety.flags.list(clinic.workspace, users=None, status="open")
    assert (flag["session_id"], flag["user_id"], flag["paused"]) == (sid, clinic.player, True)
    audit = await engine.audit.entries(workspace_id=clinic.workspace, limit=1000)
    crisis = [e for e in audit if e["action"] == "safety.crisis"]
    assert crisis and crisis[0]["details"]["flag_id"] == flag["id"]
    assert (await engine.audit.verify()).ok
    await hooks.drain()
    [delivered] = receiver.valid()
    assert delivered["flag_id"] == flag["id"] and delivered["level"] == "moderate"
    assert CRISIS not in json.dumps(delivered)  # the player's words stay in the app
    [delivery] = await hooks.deliveries(clinic.workspace, flag["id"])
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 1)
    events = await engine.sessions.events(clinic.workspace, sid, after=0, limit=100)
    stored = events[-1].payload["safety"]["input"]
    assert stored["crisis"] is True and stored["level"] == "blocked"


@pytest.mark.parametrize(
    "action", [TurnAction.SAY, TurnAction.CONTINUE, TurnAction.REGENERATE, TurnAction.CHOOSE]
)
async def test_a_paused_session_answers_every_turn_with_support_until_resumed(
    clinic: Clinic, action: TurnAction
) -> None:
    engine = clinic.engine
    sid = await clinic.session()
    await clinic.turn(sid, say("I enter the hall"))
    await engine.safety.crisis.raise_crisis(
        CrisisSignal(clinic.workspace, clinic.player, "high", ["self_harm"], "turn", sid)
    )
    model = ScriptedModel([STORY])
    engine.caps.model = model
    request = {
        TurnAction.SAY: say("I open the door"),
        TurnAction.CONTINUE: TurnRequest.build(action=TurnAction.CONTINUE, text=None, choice=None),
        TurnAction.REGENERATE: TurnRequest.build(
            action=TurnAction.REGENERATE, text=None, choice=None
        ),
        TurnAction.CHOOSE: TurnRequest.build(action=None, text=None, choice=1),
    }[action]
    paused = await clinic.turn(sid, request)
    assert paused["safety"]["action"] == "paused"
    assert paused["safety"]["level"] == "blocked" and paused["safety"]["crisis"] is False
    assert "Emergency services" in paused["reply"]["text"]
    assert model.calls == []

    resumed = await engine.safety.resume(clinic.workspace, sid, actor=clinic.therapist)
    assert resumed["flags_resolved"] == 1
    after = await clinic.turn(sid, say("I open the door"))
    assert after["safety"]["level"] == "safe"
    assert after["reply"]["text"] == "The hall is quiet."
    audit = await engine.audit.entries(workspace_id=clinic.workspace, limit=1000)
    assert any(e["action"] == "safety.resumed" for e in audit)


async def test_resuming_a_session_that_is_not_paused_is_a_conflict(clinic: Clinic) -> None:
    sid = await clinic.session()
    with pytest.raises(Conflict, match="not paused"):
        await clinic.engine.safety.resume(clinic.workspace, sid, actor=clinic.therapist)


async def test_resources_follow_the_players_locale_then_the_workspace_then_english(
    clinic: Clinic,
) -> None:
    content = clinic.engine.safety.content
    sid = await clinic.session()
    await content.set_rules(
        clinic.workspace, "workspace", content_warnings=[], forbidden=[], locale="de"
    )
    turn = await clinic.turn(sid, say("I want to kill myself"))
    assert "TelefonSeelsorge" in turn["reply"]["text"]
    await content.set_preferences(
        clinic.workspace, clinic.player, avoid_topics=[], trigger_warnings=[], locale="en-GB"
    )
    response = await clinic.engine.crisis.raise_crisis(
        CrisisSignal(clinic.workspace, clinic.player, "high", ["suicidal_ideation"], "assessment")
    )
    assert any(r["name"] == "Samaritans" for r in response.resources)


async def test_an_assessment_crisis_flags_the_player_without_pausing_a_session(
    clinic: Clinic,
) -> None:
    engine = clinic.engine
    await engine.crisis.raise_crisis(
        CrisisSignal(
            clinic.workspace, clinic.player, "high", ["suicidal_ideation"], "assessment", ref="a1"
        )
    )
    [flag] = await engine.safety.flags.list(clinic.workspace, users=[clinic.player], status=None)
    assert (flag["source"], flag["paused"], flag["session_id"]) == ("assessment", False, None)
    with pytest.raises(InvalidInput):
        await engine.crisis.raise_crisis(
            CrisisSignal(clinic.workspace, clinic.player, "none", [], "assessment")
        )


async def test_a_low_level_message_is_a_warning_and_the_story_goes_on(clinic: Clinic) -> None:
    sid = await clinic.session()
    turn = await clinic.turn(sid, say("I feel completely hopeless"))
    assert turn["safety"]["level"] == "warning"
    assert turn["safety"]["crisis_level"] == "low" and turn["safety"]["crisis"] is False
    assert turn["reply"]["text"] == "The hall is quiet."
    assert await clinic.engine.safety.flags.list(clinic.workspace, users=None, status=None) == []


# --- webhooks ----------------------------------------------------------------------------


async def test_a_failing_webhook_is_retried_with_backoff_until_delivered(
    clinic: Clinic, receiver: Receiver
) -> None:
    hooks = await fast_webhooks(clinic.engine)
    receiver.fail_first = 2
    receiver.secret = (await hooks.register(clinic.workspace, clinic.therapist, receiver.url))[
        "secret"
    ]
    await clinic.engine.crisis.raise_crisis(
        CrisisSignal(clinic.workspace, clinic.player, "critical", ["self_harm"], "turn")
    )
    await hooks.drain()
    [flag] = await clinic.engine.safety.flags.list(clinic.workspace, users=None, status=None)
    [delivery] = await hooks.deliveries(clinic.workspace, flag["id"])
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 3)
    assert len(receiver.received) == 3 and len(receiver.valid()) == 3


async def test_an_unreachable_webhook_ends_failed_and_the_crisis_still_answers(
    clinic: Clinic, caplog: pytest.LogCaptureFixture
) -> None:
    hooks = await fast_webhooks(clinic.engine)
    await hooks.register(clinic.workspace, clinic.therapist, "http://127.0.0.1:9/nothing")
    sid = await clinic.session()
    turn = await clinic.turn(sid, say("I took too many pills"))
    assert turn["safety"]["crisis"] is True
    with caplog.at_level(logging.WARNING):
        await hooks.drain()
    [flag] = await clinic.engine.safety.flags.list(clinic.workspace, users=None, status=None)
    [delivery] = await hooks.deliveries(clinic.workspace, flag["id"])
    assert (delivery["status"], delivery["attempts"]) == ("failed", 3)
    assert delivery["last_error"]
    assert "failed" in caplog.text


@pytest.mark.parametrize(
    "url", ["ftp://x.test/h", "http://[", "http://x.test:99999999/h", "http://x.test/\x00", "/h"]
)
async def test_a_webhook_url_must_be_an_absolute_http_url(clinic: Clinic, url: str) -> None:
    with pytest.raises(InvalidInput, match="http"):
        await clinic.engine.safety.webhooks.register(clinic.workspace, clinic.therapist, url)


def test_a_tampered_body_or_an_old_timestamp_fails_verification() -> None:
    from taleweaver.safety.webhooks import sign

    signature = sign("s3cret", "1700000000", b"{}")
    assert verify("s3cret", "1700000000", b"{}", signature, max_age_s=10**10)
    assert not verify("s3cret", "1700000000", b"{ }", signature, max_age_s=10**10)
    assert not verify("s3cret", "1700000000", b"{}", signature)  # too old


# --- output: content rules, regenerate or replace ----------------------------------------


async def test_an_output_breaking_a_world_rule_is_regenerated_with_the_rule_named(
    clinic: Clinic,
) -> None:
    engine = clinic.engine
    await engine.safety.content.set_rules(
        clinic.workspace, "world:w1", content_warnings=["peril"], forbidden=["spiders"], locale=None
    )
    model = ScriptedModel(["Spiders pour from the walls.", STORY])
    engine.caps.model = model
    engine.safety.checker.narrator = model
    sid = await clinic.session(world_id="w1")
    turn = await clinic.turn(sid, say("I enter"))
    assert turn["safety"]["action"] == "regenerated" and turn["safety"]["level"] == "warning"
    assert turn["reply"]["text"] == "The hall is quiet."
    assert [c["text"] for c in turn["reply"]["choices"]] == ["Go left", "Go right"]
    note = model.calls[1][-1]
    assert note.role == "system" and "spiders" in note.content
    system = "\n".join(m.content for m in model.calls[0] if m.role == "system")
    assert "never depict or describe spiders" in system


async def test_an_output_that_breaks_the_rules_twice_is_replaced(clinic: Clinic) -> None:
    engine = clinic.engine
    await engine.safety.content.set_preferences(
        clinic.workspace, clinic.player, avoid_topics=["clowns"], trigger_warnings=[], locale=None
    )
    model = ScriptedModel(["A clown grins.", "More clowns arrive."])
    engine.caps.model = model
    engine.safety.checker.narrator = model
    sid = await clinic.session()
    turn = await clinic.turn(sid, say("I enter"))
    assert turn["safety"]["action"] == "replaced" and turn["safety"]["level"] == "blocked"
    assert "clown" not in turn["reply"]["text"].lower()
    messages = await engine.sessions.messages(clinic.workspace, sid, after_turn=0, limit=10)
    assert "clown" not in messages[-1]["content"].lower()


async def test_a_trigger_warning_topic_marks_the_turn_with_a_warning(clinic: Clinic) -> None:
    await clinic.engine.safety.content.set_preferences(
        clinic.workspace, clinic.player, avoid_topics=[], trigger_warnings=["hall"], locale=None
    )
    sid = await clinic.session()
    turn = await clinic.turn(sid, say("I enter"))
    assert turn["safety"]["action"] == "content_warning"
    assert turn["reply"]["text"] == "The hall is quiet."


async def test_the_preferences_source_explains_each_piece(clinic: Clinic) -> None:
    content = clinic.engine.safety.content
    await content.set_rules(
        clinic.workspace, "workspace", content_warnings=["war"], forbidden=["gore"], locale=None
    )
    await content.set_preferences(
        clinic.workspace,
        clinic.player,
        avoid_topics=["snakes"],
        trigger_warnings=["fire"],
        locale=None,
    )
    query = RecallQuery("s", clinic.workspace, "story", {}, 1, clinic.player, "hi")
    pieces = await clinic.engine.safety.source.gather(query)
    assert {p.placement for p in pieces} == {"system"}
    reasons = " | ".join(p.reason for p in pieces)
    assert "content rules forbid" in reasons and "avoid topics" in reasons
    assert any("snakes" in p.text for p in pieces)
    with pytest.raises(InvalidInput):
        await content.set_preferences(
            clinic.workspace, clinic.player, avoid_topics=[" "], trigger_warnings=[], locale=None
        )


# --- the model classifier -----------------------------------------------------------------


def test_the_classifiers_answer_must_be_the_asked_for_json() -> None:
    good = parse_verdict('Sure: {"level": "high", "categories": ["self_harm"]}')
    assert good is not None and good.level == "high" and good.categories == ("self_harm",)
    assert parse_verdict("I think they are fine") is None
    assert parse_verdict('{"level": "extreme", "categories": []}') is None
    assert parse_verdict('{"level": "high", "categories": ["sadness"]}') is None


def _classifier_engine(engine: Engine, reply: str | Callable[..., str], policy: Policy) -> None:
    def script(messages: Sequence[ChatMessage]) -> str:
        if messages and "safety classifier" in messages[0].content:
            return reply if isinstance(reply, str) else reply(messages)
        return STORY

    model = ScriptedModel(script)
    engine.caps.model = model
    checker = engine.safety.checker
    checker.policy = policy
    checker.classifier = ModelClassifier(model)


async def test_rules_or_model_lets_the_model_catch_what_the_rules_miss(clinic: Clinic) -> None:
    _classifier_engine(
        clinic.engine,
        '{"level": "high", "categories": ["suicidal_ideation"]}',
        Policy.RULES_OR_MODEL,
    )
    sid = await clinic.session()
    turn = await clinic.turn(sid, say("my candle is burning down for the last time"))
    assert turn["safety"]["crisis"] is True and turn["safety"]["crisis_level"] == "high"


async def test_a_broken_classifier_falls_back_to_the_rules_and_says_so(
    clinic: Clinic, caplog: pytest.LogCaptureFixture
) -> None:
    _classifier_engine(clinic.engine, "no idea, sorry", Policy.RULES_OR_MODEL)
    sid = await clinic.session()
    with caplog.at_level(logging.WARNING):
        turn = await clinic.turn(sid, say("I want to kill myself"))
    assert turn["safety"]["crisis"] is True  # the rules still caught it
    assert "using the rules alone" in caplog.text


async def test_model_confirms_rules_drops_an_unconfirmed_warning_but_never_a_crisis(
    clinic: Clinic,
) -> None:
    _classifier_engine(
        clinic.engine, '{"level": "none", "categories": []}', Policy.MODEL_CONFIRMS_RULES
    )
    sid = await clinic.session()
    warned = await clinic.turn(sid, say("I feel completely hopeless"))
    assert warned["safety"]["level"] == "safe"
    crisis = await clinic.turn(sid, say("I want to kill myself"))
    assert crisis["safety"]["crisis"] is True


def test_an_unknown_policy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from taleweaver.safety.service import configured_policy

    monkeypatch.setenv("TALEWEAVER_SAFETY_POLICY", "vibes")
    with pytest.raises(InvalidInput, match="unknown safety policy"):
        configured_policy(False)
    monkeypatch.delenv("TALEWEAVER_SAFETY_POLICY")
    assert configured_policy(True) == Policy.RULES_OR_MODEL
    assert configured_policy(False) == Policy.RULES


# --- forks -------------------------------------------------------------------------------


async def test_a_fork_of_a_paused_session_starts_paused_and_is_resumed_on_its_own(
    clinic: Clinic,
) -> None:
    engine = clinic.engine
    sid = await clinic.session()
    await clinic.turn(sid, say("I enter the hall"))
    await clinic.turn(sid, say(CRISIS))
    assert await engine.safety.paused(clinic.workspace, sid)
    meta = EventMetadata(actor=clinic.player)
    for at_turn in (0, 1):  # forking before the crisis is no way out either
        fork = await engine.sessions.fork(
            clinic.workspace,
            sid,
            at_turn=at_turn,
            title=None,
            owner_id=clinic.player,
            metadata=meta,
        )
        assert await engine.safety.paused(clinic.workspace, fork["id"])
        model = ScriptedModel([STORY])
        engine.caps.model = model
        answer = await clinic.turn(fork["id"], say("I open the door"))
        assert answer["safety"]["action"] == "paused" and model.calls == []
    (carried,) = await engine.safety.flags.list(
        clinic.workspace, users=None, status="open", session_id=fork["id"]
    )
    (original,) = await engine.safety.flags.list(
        clinic.workspace, users=None, status="open", session_id=sid
    )
    assert (carried["source"], carried["ref"], carried["user_id"]) == (
        "fork",
        original["id"],
        clinic.player,
    )
    assert carried["categories"] == original["categories"]
    audit = await engine.audit.entries(workspace_id=clinic.workspace, limit=1000)
    assert any(e["action"] == "safety.pause_carried" and e["target"] == fork["id"] for e in audit)

    await engine.safety.resume(clinic.workspace, fork["id"], actor=clinic.therapist)
    assert not await engine.safety.paused(clinic.workspace, fork["id"])
    assert await engine.safety.paused(clinic.workspace, sid)  # the original still waits


async def test_a_fork_of_a_resumed_session_is_not_paused(clinic: Clinic) -> None:
    engine = clinic.engine
    sid = await clinic.session()
    await clinic.turn(sid, say(CRISIS))
    await engine.safety.resume(clinic.workspace, sid, actor=clinic.therapist)
    fork = await engine.sessions.fork(
        clinic.workspace, sid, at_turn=1, title=None, metadata=EventMetadata(actor=clinic.player)
    )
    assert not await engine.safety.paused(clinic.workspace, fork["id"])


async def test_a_fork_that_fails_to_commit_leaves_no_session_and_no_flag(
    clinic: Clinic,
) -> None:
    engine = clinic.engine
    sid = await clinic.session()
    await clinic.turn(sid, say(CRISIS))
    flags_before = await engine.safety.flags.list(clinic.workspace, users=None, status=None)
    sessions_before = await engine.sessions.list_page(
        clinic.workspace, SessionFilter(), limit=100, offset=0
    )

    async def fail(*_: Any) -> None:  # after the pause was carried, inside the transaction
        raise InvalidInput("refused")

    engine.sessions.fork_hooks.append(fail)
    try:
        with pytest.raises(InvalidInput):
            await engine.sessions.fork(
                clinic.workspace,
                sid,
                at_turn=1,
                title=None,
                metadata=EventMetadata(actor=clinic.player),
            )
    finally:
        engine.sessions.fork_hooks.remove(fail)
    assert await engine.safety.flags.list(clinic.workspace, users=None, status=None) == (
        flags_before
    )
    assert (
        await engine.sessions.list_page(clinic.workspace, SessionFilter(), limit=100, offset=0)
        == sessions_before
    )


# --- the learned detector in a turn (rules+learned) -------------------------------------


def _with_learned(engine: Engine) -> None:
    from taleweaver.safety.service import shared_detector

    checker = engine.safety.checker
    checker.policy = Policy.RULES_LEARNED
    checker.learned = shared_detector()
    assert checker.learned is not None


@pytest.mark.parametrize(
    "text",
    [
        "tomorrow after work is when i do it, i already know how",
        "i took way more of my pills than i should have and my heart won't slow down",
        "he's got my phone and the door is locked, i'm scared he'll see me typing",
        "guardé las pastillas de todo el mes, esta noche me las tomo todas",
        "j'ai laissé une lettre pour ma mère, demain je ne serai plus là",
        "ich hab seit vier tagen nichts gegessen und bin gerade umgekippt",
        "a faca tá do meu lado, quando ele chegar eu acabo com ele",
    ],
)
async def test_with_the_learned_detector_the_kinds_that_slipped_pause_the_story(
    clinic: Clinic, text: str
) -> None:
    _with_learned(clinic.engine)
    sid = await clinic.session()
    turn = await clinic.turn(sid, say(text))
    assert turn["safety"]["crisis"] is True and turn["safety"]["action"] == "crisis_protocol"
    [flag] = await clinic.engine.safety.flags.list(clinic.workspace, users=None, status="open")
    assert flag["paused"] is True


async def test_breaking_the_fiction_frame_after_a_scene_pauses_the_story(clinic: Clinic) -> None:
    _with_learned(clinic.engine)
    clinic.engine.caps.model = ScriptedModel(
        ["The ranger kneels by the river, a vial of poison in her hand.\n\nChoices:\n1. Drink\n"]
    )
    sid = await clinic.session()
    scene = await clinic.turn(sid, say("my ranger looks at the vial for a long time"))
    assert scene["safety"]["crisis"] is False
    turn = await clinic.turn(sid, say("ooc: that's me, not her. the vial is real, it's my pills"))
    assert turn["safety"]["crisis"] is True


async def test_with_the_learned_detector_idiom_and_play_go_on(clinic: Clinic) -> None:
    _with_learned(clinic.engine)
    sid = await clinic.session()
    for text in (
        "i'm dying to know what the oracle says",
        "me muero de hambre, seguimos en la taberna",
        "mon voleur égorge le garde et prend la clé",
        "ich lach mich tot, der zwerg ist in den brunnen gefallen",
        "tô morrendo de curiosidade, abro o baú",
    ):
        turn = await clinic.turn(sid, say(text))
        assert turn["safety"]["crisis"] is False, text
        assert turn["reply"]["text"] == "The hall is quiet."
