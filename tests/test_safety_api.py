"""The safety routes as their users meet them: therapists, players, admins, over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from taleweaver.auth import Role
from taleweaver.config import Settings
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.safety.rules import RULES_ENV, shipped_rules_path
from tests.conftest import LoopbackServer

CRISIS = "I want to kill myself"


@dataclass
class Clinic:
    base_url: str
    workspace: str
    users: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    def client(self, who: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[who]}", "X-Workspace": self.workspace}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


async def _build(settings: Settings) -> Clinic:
    engine = await Engine.open(settings, model=ScriptedModel())
    try:
        clinic = Clinic("", "")
        for name in ["owner", "player", "other", "therapist", "editor"]:
            user = await engine.accounts.create_user(f"{name}@clinic.test", password=None)
            clinic.users[name] = user["id"]
            clinic.keys[name], _ = await engine.credentials.create_api_key(
                user["id"], "k", ["admin"], None
            )
        ws = await engine.accounts.create_workspace(clinic.users["owner"], "C", sensitive=False)
        clinic.workspace = ws["id"]
        roles = {
            "player": Role.PLAYER,
            "other": Role.PLAYER,
            "therapist": Role.THERAPIST,
            "editor": Role.EDITOR,
        }
        for name, role in roles.items():
            await engine.accounts.set_member(
                clinic.workspace, clinic.users[name], role, actor="t", actor_role=Role.OWNER
            )
        await engine.accounts.assign(
            clinic.workspace, clinic.users["therapist"], clinic.users["player"], actor="t"
        )
    finally:
        await engine.close()
    return clinic


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clinic]:
    data_dir = tmp_path_factory.mktemp("safety-api")
    settings = Settings(
        data_dir=data_dir,
        model="scripted",
        scripted_token_delay_ms=0,
        require_login=True,
        rate_limit="100000/minute",
    )
    # The server's rules are a copy, so that a test may break and restore them.
    rules = data_dir / "rules.toml"
    rules.write_text(shipped_rules_path().read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(RULES_ENV, str(rules))
        built = asyncio.run(_build(settings))
        with LoopbackServer(settings, ScriptedModel()) as server:
            built.base_url = server.base_url
            yield built


def crisis_session(clinic: Clinic, who: str) -> str:
    with clinic.client(who) as client:
        sid: str = client.post("/api/v1/sessions", json={"kind": "story", "title": "S"}).json()[
            "id"
        ]
        turn = client.post(f"/api/v1/sessions/{sid}/turns", json={"text": CRISIS})
        assert turn.json()["safety"]["crisis"] is True
    return sid


def test_a_therapist_sees_and_resumes_only_their_assigned_players_flags(clinic: Clinic) -> None:
    mine = crisis_session(clinic, "player")
    theirs = crisis_session(clinic, "other")
    with clinic.client("therapist") as therapist:
        seen = {f["session_id"] for f in therapist.get("/api/v1/safety/flags").json()}
        assert mine in seen and theirs not in seen
        other = therapist.get("/api/v1/safety/flags", params={"player_id": clinic.users["other"]})
        assert other.status_code == 404
        assert therapist.post(f"/api/v1/sessions/{theirs}/safety/resume").status_code == 404
        resumed = therapist.post(f"/api/v1/sessions/{mine}/safety/resume")
        assert resumed.status_code == 200 and resumed.json()["paused"] is False
        again = therapist.post(f"/api/v1/sessions/{mine}/safety/resume")
        assert again.status_code == 409
    with clinic.client("owner") as owner:
        seen = {f["session_id"] for f in owner.get("/api/v1/safety/flags").json()}
        assert {mine, theirs} <= seen
        open_ = {
            f["session_id"]
            for f in owner.get("/api/v1/safety/flags", params={"status": "open"}).json()
        }
        assert theirs in open_ and mine not in open_


def test_a_player_cannot_lift_their_own_pause_or_read_flags(clinic: Clinic) -> None:
    sid = crisis_session(clinic, "player")
    with clinic.client("player") as player:
        assert player.post(f"/api/v1/sessions/{sid}/safety/resume").status_code == 403
        assert player.get("/api/v1/safety/flags").status_code == 403


def test_forking_a_paused_session_over_http_gives_a_paused_fork(clinic: Clinic) -> None:
    sid = crisis_session(clinic, "player")
    with clinic.client("player") as player:
        forked = player.post(f"/api/v1/sessions/{sid}/fork", json={"at_turn": 0})
        assert forked.status_code == 201
        fork = forked.json()["id"]
        turn = player.post(f"/api/v1/sessions/{fork}/turns", json={"text": "I open the door"})
        assert turn.json()["safety"]["action"] == "paused"
    with clinic.client("therapist") as therapist:
        flags = therapist.get("/api/v1/safety/flags", params={"session_id": fork}).json()
        assert [(f["source"], f["status"], f["paused"]) for f in flags] == [("fork", "open", True)]
        assert therapist.post(f"/api/v1/sessions/{fork}/safety/resume").status_code == 200
    with clinic.client("player") as player:
        turn = player.post(f"/api/v1/sessions/{fork}/turns", json={"text": "I open the door"})
        assert turn.json()["safety"]["action"] != "paused"
        still = player.post(f"/api/v1/sessions/{sid}/turns", json={"text": "I open the door"})
        assert still.json()["safety"]["action"] == "paused"


def test_a_webhook_secret_is_shown_once_and_only_for_ones_own_hook(clinic: Clinic) -> None:
    with clinic.client("therapist") as therapist:
        made = therapist.put("/api/v1/safety/webhook", json={"url": "https://example.test/h"})
        assert made.status_code == 200 and len(made.json()["secret"]) > 20
        shown = therapist.get("/api/v1/safety/webhook").json()
        assert shown == {"user_id": clinic.users["therapist"], "url": "https://example.test/h"}
        someone_else = therapist.put(
            "/api/v1/safety/webhook",
            json={"url": "https://example.test/h", "user_id": clinic.users["owner"]},
        )
        assert someone_else.status_code == 403
        bad = therapist.put("/api/v1/safety/webhook", json={"url": "javascript:alert(1)"})
        assert bad.status_code == 422


def test_players_keep_their_own_preferences_and_bad_ones_are_refused(clinic: Clinic) -> None:
    me = clinic.users["player"]
    with clinic.client("player") as player:
        saved = player.put(
            f"/api/v1/safety/preferences/{me}",
            json={"avoid_topics": ["Spiders", "spiders", "drowning"], "locale": "de-AT"},
        )
        assert saved.status_code == 200
        assert saved.json()["avoid_topics"] == ["Spiders", "drowning"]
        assert player.get(f"/api/v1/safety/preferences/{me}").json()["locale"] == "de-AT"
        other = clinic.users["other"]
        assert player.get(f"/api/v1/safety/preferences/{other}").status_code == 404
        assert (
            player.put(
                f"/api/v1/safety/preferences/{me}", json={"locale": "not a locale!"}
            ).status_code
            == 422
        )
        too_many = player.put(
            f"/api/v1/safety/preferences/{me}", json={"avoid_topics": ["x"] * 101}
        )
        assert too_many.status_code == 422
        assert player.get(f"/api/v1/safety/preferences/{me}").json()["locale"] == "de-AT"


def test_world_rules_override_the_workspaces_and_reach_the_narrator(clinic: Clinic) -> None:
    with clinic.client("owner") as owner:
        owner.put("/api/v1/safety/content", json={"forbidden": ["wolves"]}).raise_for_status()
        world = owner.put(
            "/api/v1/safety/worlds/moor/content",
            json={"forbidden": ["lantern"], "content_warnings": ["storms"]},
        )
        assert world.json()["scope"] == "world:moor"
        sid = owner.post(
            "/api/v1/sessions",
            json={"kind": "story", "title": "Moor", "settings": {"world_id": "moor"}},
        ).json()["id"]
        turn = owner.post(f"/api/v1/sessions/{sid}/turns", json={"text": "I walk"}).json()
        # The scripted narrator always mentions a lantern: asked again, it does again.
        assert turn["safety"]["action"] == "replaced"
        assert "lantern" not in turn["reply"]["text"].lower()
    with clinic.client("editor") as editor:
        assert editor.get("/api/v1/safety/worlds/moor/content").json()["forbidden"] == ["lantern"]
        assert editor.put("/api/v1/safety/content", json={}).status_code == 403


def test_the_dry_run_check_says_what_it_found_and_flags_nothing(clinic: Clinic) -> None:
    with clinic.client("owner") as owner:
        before = len(owner.get("/api/v1/safety/flags").json())
        found = owner.post("/api/v1/safety/check", json={"text": CRISIS + " tonight"}).json()
        assert found["outcome"] == "blocked" and found["level"] == "critical"
        assert "risk.timeframe" in found["risk_factors"]
        idiom = owner.post("/api/v1/safety/check", json={"text": "this boss is killing me"})
        assert idiom.json()["outcome"] == "safe"
        assert len(owner.get("/api/v1/safety/flags").json()) == before


def test_reloading_picks_up_an_edit_and_refuses_a_broken_file(clinic: Clinic) -> None:
    with clinic.client("owner") as owner:
        ok = owner.post("/api/v1/safety/rules/reload")
        assert ok.status_code == 200
        path = Path(ok.json()["path"])
        assert path != shipped_rules_path()  # the copy named by TALEWEAVER_SAFETY_RULES
        original = path.read_text()
        path.write_text(original.replace('version = "', 'version = "edited-', 1))
        assert owner.post("/api/v1/safety/rules/reload").json()["version"].startswith("edited-")
        path.write_text("version = ")
        bad = owner.post("/api/v1/safety/rules/reload")
        assert bad.status_code == 422 and "not valid TOML" in bad.json()["detail"]
        still = owner.post("/api/v1/safety/check", json={"text": CRISIS}).json()
        assert still["crisis"] is True and still["rules_version"].startswith("edited-")
        path.write_text(original)
