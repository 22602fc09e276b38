"""Who may call every route: the role x action table, and each route enforcing it.

The expected outcome of each case comes from SPEC below, written out here as the
specification, not read from the policy module it checks. Routes are enumerated
from the app itself: a route with no declared policy, or with no entry in
ROUTES here, fails the suite until someone decides who may call it.

Authorization is decided in one place (`requires` -> `decide`), so the matrix is
checked in three layers, each complete: every route declares the action SPEC names
for it; for every role and action the policy decides what SPEC says; and every
route, called in-process through the whole ASGI stack, succeeds for an allowed
role with a valid request, refuses a role SPEC refuses (by grant, and, where a role
sees only its own sessions or records, by ownership), answers 404 in a stranger's
workspace and 401 without credentials.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from taleweaver.api import create_app
from taleweaver.api.security import INSTANCE_ADMIN, PUBLIC, SELF, route_policy
from taleweaver.auth.policy import GRANTS, Action, Role, decide, may_see
from taleweaver.config import Settings
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel

ROLES = ["owner", "admin", "editor", "reviewer", "player", "therapist", "viewer"]
EVERYONE = set(ROLES)
PLAYS = {"owner", "admin", "editor", "player"}
MANAGES = {"owner", "admin"}

# Who may do what in a workspace they belong to. Players and therapists act only
# on sessions they started (or, for therapists, their assigned players started):
# on a session the owner started they are refused like strangers.
SPEC: dict[str, set[str]] = {
    "session.create": PLAYS,
    "session.list": EVERYONE,
    "session.read": EVERYONE - {"player", "therapist"},
    "session.update": PLAYS - {"player"},
    "session.delete": PLAYS - {"player"},
    "session.play": PLAYS - {"player"},
    "search": EVERYONE,
    "workspace.read": EVERYONE,
    "workspace.update": MANAGES,
    "workspace.delete": {"owner"},
    "members.read": EVERYONE - {"player"},
    "members.manage": MANAGES,
    "audit.read": MANAGES,
    "secrets.manage": MANAGES,
    "usage.read": MANAGES | {"editor"},
    "world.read": EVERYONE,
    "world.edit": MANAGES | {"editor"},
    "world.review": MANAGES | {"editor", "reviewer"},
    "character.read": EVERYONE,
    "character.edit": MANAGES | {"editor"},
    "workspace.export": MANAGES,
    "safety.manage": MANAGES,
    # About the owner's own sessions or records: a player or therapist who is not
    # assigned to the owner is refused like a stranger.
    "safety.review": MANAGES,
    "therapy.read": MANAGES,
    "therapy.write": MANAGES,
    # File-editor sessions in the workspace's folder; terminals run commands on the
    # server (here workspace admins may: the fixture sets terminal_workspace_admins).
    "file.read": EVERYONE - {"player"},
    "file.edit": MANAGES | {"editor"},
    "terminal.use": MANAGES,
}


# The TestClient's response: an httpx (or httpx2, which Starlette prefers) Response.
Response = Any


@dataclass
class Caller:
    """Requests to the app, in process, with one set of headers (a principal's)."""

    http: TestClient
    headers: dict[str, str] = field(default_factory=dict)

    def __enter__(self) -> Caller:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        headers = self.headers | dict(kwargs.pop("headers", None) or {})
        return self.http.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Response:
        return self.request("DELETE", path, **kwargs)


@dataclass
class World:
    """Two workspaces: A, where each role has one user, and B, a stranger's."""

    engine_settings: Settings
    http: Any = None  # the app's TestClient, once it runs
    keys: dict[str, str] = field(default_factory=dict)  # role or name -> API key
    users: dict[str, str] = field(default_factory=dict)  # role or name -> user id
    own: str = ""
    foreign: str = ""

    def client(self, who: str) -> Caller:
        return self.caller({"Authorization": f"Bearer {self.keys[who]}"})

    def caller(self, headers: dict[str, str] | None = None) -> Caller:
        """Anyone with these headers (none: an anonymous caller)."""
        return Caller(self.http, dict(headers or {}))


async def _build_world(settings: Settings) -> World:
    engine = await Engine.open(settings, model=ScriptedModel())
    world = World(engine_settings=settings)
    try:
        for name in [*ROLES, "player2", "stranger", "admin-of-instance"]:
            user = await engine.accounts.create_user(
                f"{name}@example.com",
                password="correct horse battery",
                instance_admin=name == "admin-of-instance",
            )
            world.users[name] = user["id"]
            token, _ = await engine.credentials.create_api_key(
                user["id"], "matrix", ["admin"], None
            )
            world.keys[name] = token
        own = await engine.accounts.create_workspace(world.users["owner"], "A", sensitive=False)
        world.own = own["id"]
        for name in [*ROLES[1:], "player2"]:
            role = "player" if name == "player2" else name
            await engine.accounts.set_member(
                world.own, world.users[name], _role(role), actor="test", actor_role=_role("owner")
            )
        foreign = await engine.accounts.create_workspace(
            world.users["stranger"], "B", sensitive=False
        )
        world.foreign = foreign["id"]
    finally:
        await engine.close()
    return world


def _role(name: str) -> Any:
    from taleweaver.auth import Role

    return Role(name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir: Path = tmp_path_factory.mktemp("matrix")
    settings = Settings(
        data_dir=data_dir,
        model="scripted",
        scripted_token_delay_ms=0,
        require_login=True,
        rate_limit="100000/minute",
        terminal_enabled=True,
        terminal_workspace_admins=True,
        terminal_command=["/bin/cat"],
        terminal_max_open=1000,
    )
    built = asyncio.run(_build_world(settings))
    with TestClient(create_app(settings, model=ScriptedModel())) as http:
        built.http = http
        yield built


# --- resources each case acts on, made fresh by the workspace's owner ----------------


def _new_session(world: World, workspace: str, opening: str = "Begin") -> str:
    owner = "owner" if workspace == world.own else "stranger"
    with world.client(owner) as client:
        created = client.post(
            "/api/v1/sessions",
            json={"kind": "story", "title": "Matrix"},
            headers={"X-Workspace": workspace},
        )
        assert created.status_code == 201, created.text
        session_id: str = created.json()["id"]
        turn = client.post(f"/api/v1/sessions/{session_id}/turns", json={"text": opening})
        assert turn.status_code == 201, turn.text
    return session_id


def _last_turn(world: World, workspace: str, session_id: str) -> str:
    owner = "owner" if workspace == world.own else "stranger"
    with world.client(owner) as client:
        events = client.get(f"/api/v1/sessions/{session_id}/events").json()
    turn_id: str = events[-1]["payload"]["turn_id"]
    return turn_id


def _last_reply(world: World, workspace: str, session_id: str) -> str:
    owner = "owner" if workspace == world.own else "stranger"
    with world.client(owner) as client:
        rows = client.get(f"/api/v1/sessions/{session_id}/messages").json()
    message_id: str = rows[-1]["id"]
    return message_id


def _new_workspace(world: World, workspace: str, role: str) -> str:
    """A throwaway workspace where `role`'s user has that role (or, foreign, none)."""
    owner = "owner" if workspace == world.own else "stranger"
    with world.client(owner) as client:
        created = client.post("/api/v1/workspaces", json={"name": "Throwaway"}).json()
        if workspace == world.own and role != "owner":
            client.put(
                f"/api/v1/workspaces/{created['id']}/members/{world.users[role]}",
                json={"role": role},
            ).raise_for_status()
        if workspace == world.own and role == "owner":
            pass  # "owner" made it, and owns it
    workspace_id: str = created["id"]
    return workspace_id


def _new_member(world: World, workspace: str) -> str:
    """A fresh account added to the workspace as a viewer."""
    with world.client("admin-of-instance") as admin:
        user = admin.post(
            "/api/v1/users", json={"email": f"{uuid.uuid4().hex[:10]}@example.com"}
        ).json()
    owner = "owner" if workspace == world.own else "stranger"
    with world.client(owner) as client:
        client.put(
            f"/api/v1/workspaces/{workspace}/members/{user['id']}", json={"role": "viewer"}
        ).raise_for_status()
    user_id: str = user["id"]
    return user_id


Request = tuple[str, str, dict[str, Any]]  # method, path, httpx keyword arguments


@dataclass(frozen=True)
class Case:
    action: str
    build: Callable[[World, str, str], Request]  # (world, workspace, role) -> request
    # What an allowed, valid request answers, when it is not a success: only where
    # the success needs a state no request can hold still (a turn mid-generation).
    allowed_status: int | None = None


def _session_case(
    action: str, method: str, suffix: str, *, opening: str = "Begin", **kwargs: Any
) -> Case:
    def build(world: World, workspace: str, role: str) -> Request:
        sid = _new_session(world, workspace, opening)
        path = f"/api/v1/sessions/{sid}{suffix}"
        if "{turn_id}" in path:
            path = path.replace("{turn_id}", _last_turn(world, workspace, sid))
        if "{message_id}" in path:
            path = path.replace("{message_id}", _last_reply(world, workspace, sid))
        return method, path, kwargs

    return Case(action, build)


def _openai_chat_case() -> Case:
    """A chat completion naming a session as its model: the session's rules apply."""

    def build(world: World, workspace: str, role: str) -> Request:
        sid = _new_session(world, workspace)
        body = {"model": f"session/{sid}", "messages": [{"role": "user", "content": "Go on"}]}
        return "POST", "/openai/v1/chat/completions", {"json": body}

    return Case("session.play", build)


def _collection_case(action: str, method: str, path: str, **kwargs: Any) -> Case:
    def build(world: World, workspace: str, role: str) -> Request:
        return method, path, kwargs | {"headers": {"X-Workspace": workspace}}

    return Case(action, build)


def _workspace_case(action: str, method: str, suffix: str, **kwargs: Any) -> Case:
    def build(world: World, workspace: str, role: str) -> Request:
        return method, f"/api/v1/workspaces/{workspace}{suffix}", kwargs

    return Case(action, build)


def _delete_workspace(world: World, workspace: str, role: str) -> Request:
    return "DELETE", f"/api/v1/workspaces/{_new_workspace(world, workspace, role)}", {}


def _put_member(world: World, workspace: str, role: str) -> Request:
    with world.client("admin-of-instance") as admin:
        user = admin.post(
            "/api/v1/users", json={"email": f"{uuid.uuid4().hex[:10]}@example.com"}
        ).json()
    return (
        "PUT",
        f"/api/v1/workspaces/{workspace}/members/{user['id']}",
        {"json": {"role": "viewer"}},
    )


def _delete_member(world: World, workspace: str, role: str) -> Request:
    return "DELETE", f"/api/v1/workspaces/{workspace}/members/{_new_member(world, workspace)}", {}


def _delete_secret(world: World, workspace: str, role: str) -> Request:
    name = f"key-{uuid.uuid4().hex[:8]}"
    owner = "owner" if workspace == world.own else "stranger"
    with world.client(owner) as client:
        client.put(
            f"/api/v1/workspaces/{workspace}/secrets/{name}", json={"value": "sk-test"}
        ).raise_for_status()
    return "DELETE", f"/api/v1/workspaces/{workspace}/secrets/{name}", {}


def _import_bundle(world: World, workspace: str, role: str) -> Request:
    """A real bundle: an export of a small workspace of the same owner's."""
    owner = "owner" if workspace == world.own else "stranger"
    with world.client(owner) as client:
        small = client.post("/api/v1/workspaces", json={"name": "Bundled"}).json()["id"]
        client.post(
            "/api/v1/sessions",
            json={"kind": "story", "title": "Bundled"},
            headers={"X-Workspace": small},
        ).raise_for_status()
        bundle = client.get(f"/api/v1/workspaces/{small}/export")
        bundle.raise_for_status()
    return "POST", f"/api/v1/workspaces/{workspace}/import", {"content": bundle.content}


def _assign(world: World, workspace: str, role: str) -> Request:
    body = {"therapist_id": world.users["therapist"], "player_id": world.users["player"]}
    return "PUT", f"/api/v1/workspaces/{workspace}/assignments", {"json": body}


def _therapy_player(world: World, workspace: str) -> str:
    """The workspace owner, with a consented therapy profile (their records are the target)."""
    owner = "owner" if workspace == world.own else "stranger"
    with world.client(owner) as client:
        client.put(
            "/api/v1/players/me/profile",
            json={"consent": {"therapy_data": True}},
            headers={"X-Workspace": workspace},
        ).raise_for_status()
    return world.users[owner]


def _therapy_case(action: str, method: str, suffix: str, **kwargs: Any) -> Case:
    def build(world: World, workspace: str, role: str) -> Request:
        player = _therapy_player(world, workspace)
        headers = {"X-Workspace": workspace}
        return method, f"/api/v1/players/{player}{suffix}", kwargs | {"headers": headers}

    return Case(action, build)


def _therapy_goal_case(method: str, **kwargs: Any) -> Case:
    def build(world: World, workspace: str, role: str) -> Request:
        player = _therapy_player(world, workspace)
        owner = "owner" if workspace == world.own else "stranger"
        headers = {"X-Workspace": workspace}
        with world.client(owner) as client:
            goal = client.post(
                "/api/v1/players/me/goals", json={"title": "Matrix goal"}, headers=headers
            )
            goal.raise_for_status()
        path = f"/api/v1/players/{player}/goals/{goal.json()['id']}"
        return method, path, kwargs | {"headers": headers}

    return Case("therapy.write", build)


def _therapy_flag_case(world: World, workspace: str, role: str) -> Request:
    """An open flag of the owner's, raised by a positive PHQ-9 item 9 (no session)."""
    player = _therapy_player(world, workspace)
    owner = "owner" if workspace == world.own else "stranger"
    headers = {"X-Workspace": workspace}
    with world.client(owner) as client:
        client.post(
            "/api/v1/players/me/assessments",
            json={"instrument": "phq9", "answers": [0] * 8 + [1]},
            headers=headers,
        ).raise_for_status()
        flags = client.get(
            "/api/v1/safety/flags",
            params={"player_id": player, "status": "open"},
            headers=headers,
        )
        flags.raise_for_status()
    path = f"/api/v1/players/{player}/flags/{flags.json()[0]['id']}/acknowledge"
    return "POST", path, {"headers": headers}


def _therapy_compatibility(world: World, workspace: str, role: str) -> Request:
    body = {"user_id": _therapy_player(world, workspace), "world": {"intensity": 2}}
    headers = {"X-Workspace": workspace}
    return "POST", "/api/v1/therapy/compatibility", {"json": body, "headers": headers}


_W = "/api/v1/worlds/{world_id}"


_WORLD_SHARED: dict[tuple[int, str], dict[str, str]] = {}


def _world_fixture(world: World, workspace: str, *, story: bool = False) -> dict[str, str]:
    """A fresh world in `workspace` (made by its owner) with two near-duplicate NPCs,
    a fact, a relation and an entry; with `story`, also a session that played a turn
    in it, a pending artifact and an open finding."""
    owner = "owner" if workspace == world.own else "stranger"
    headers = {"X-Workspace": workspace}
    with world.client(owner) as client:

        def post(path: str, body: dict[str, Any]) -> Any:
            response = client.post(path, json=body, headers=headers)
            assert response.status_code in (200, 201), response.text
            return response.json()

        wid = post("/api/v1/worlds", {"name": "Matrix world"})["id"]
        base = f"/api/v1/worlds/{wid}"
        mira = post(f"{base}/entities", {"type": "npc", "name": "Mira Vance"})["id"]
        mirra = post(f"{base}/entities", {"type": "npc", "name": "Mirra Vance"})["id"]
        fact = post(f"{base}/entities/{mira}/facts", {"attribute": "age", "value": 30})["id"]
        rel = post(f"{base}/entities/{mira}/relations", {"type": "ally_of", "target_id": mirra})
        entry = post(f"{base}/entries", {"title": "Notes", "body": "[[Mira Vance]]"})["id"]
        ids = {
            "world_id": wid,
            "entity_id": mira,
            "other_entity_id": mirra,
            "fact_id": fact,
            "relation_id": rel["id"],
            "entry_id": entry,
        }
        if not story:
            return ids
        session = post(
            "/api/v1/sessions", {"kind": "story", "title": "W", "settings": {"world_id": wid}}
        )["id"]
        turn = post(f"/api/v1/sessions/{session}/turns", {"text": "greet Thessaly Crane"})
        queue = client.get(f"{base}/review", headers=headers).json()
        findings = post(f"{base}/continuity", {})
    return ids | {
        "session_id": session,
        "turn_id": turn["id"],
        "artifact_id": queue[0]["id"] if queue else "none",
        "finding_id": findings[0]["id"] if findings else "none",
    }


def _world_shared(world: World, workspace: str) -> dict[str, str]:
    """One story world per workspace for every case that leaves it usable: a refused
    request changes nothing, and an allowed one adds, edits or decides (a second
    decision on the same artifact is a 409, still not a refusal)."""
    key = (id(world), workspace)
    if key not in _WORLD_SHARED:
        _WORLD_SHARED[key] = _world_fixture(world, workspace, story=True)
    return _WORLD_SHARED[key]


def _world_case(action: str, method: str, path: str, **kwargs: Any) -> Case:
    def build(world: World, workspace: str, role: str) -> Request:
        # Deleting needs its own world: the next role must still find the thing.
        fresh = method == "DELETE"
        ids = _world_fixture(world, workspace) if fresh else _world_shared(world, workspace)
        filled = path.format(**ids)
        body = kwargs.get("json")
        if isinstance(body, dict):  # "{world_id}" and the like in a body are ids too
            filled_body = {
                k: v.format(**ids) if isinstance(v, str) and v.startswith("{") else v
                for k, v in body.items()
            }
            kwargs_ = kwargs | {"json": filled_body}
        else:
            kwargs_ = kwargs
        return method, filled, kwargs_ | {"headers": {"X-Workspace": workspace}}

    return Case(action, build)


def _world_turn_case(action: str, method: str, suffix: str, **kwargs: Any) -> Case:
    """A route about a turn of a session that plays in a world."""

    def build(world: World, workspace: str, role: str) -> Request:
        ids = _world_shared(world, workspace)
        body = kwargs.get("json")
        extra = kwargs
        if isinstance(body, dict):
            extra = kwargs | {"json": body | {"world_id": ids["world_id"]}}
        path = f"/api/v1/sessions/{ids['session_id']}/turns/{ids['turn_id']}{suffix}"
        return method, path, extra

    return Case(action, build)


def _session_book_case(method: str) -> Case:
    """Attaching (POST) or detaching (DELETE) a book of the workspace's own on a session
    (attached already, for DELETE)."""

    def build(world: World, workspace: str, role: str) -> Request:
        sid = _new_session(world, workspace)
        owner = "owner" if workspace == world.own else "stranger"
        headers = {"X-Workspace": workspace}
        book = {"entries": {"0": {"uid": 0, "key": ["lantern"], "content": "A lantern."}}}
        with world.client(owner) as client:
            made = client.post(
                "/api/v1/lorebooks/import?on_duplicate=copy", json=book, headers=headers
            )
            assert made.status_code == 201, made.text
            book_id = made.json()["id"]
            if method == "DELETE":
                attached = client.post(
                    f"/api/v1/sessions/{sid}/lorebooks", json={"lorebook_id": book_id}
                )
                assert attached.status_code == 201, attached.text
        if method == "DELETE":
            return method, f"/api/v1/sessions/{sid}/lorebooks/{book_id}", {"headers": headers}
        body = {"json": {"lorebook_id": book_id}, "headers": headers}
        return method, f"/api/v1/sessions/{sid}/lorebooks", body

    return Case("session.update", build)


def _lorebook_case(action: str, method: str, suffix: str, **kwargs: Any) -> Case:
    """A route about one lorebook (with entry 0), imported fresh by the workspace's owner."""

    def build(world: World, workspace: str, role: str) -> Request:
        owner = "owner" if workspace == world.own else "stranger"
        headers = {"X-Workspace": workspace}
        book = {"entries": {"0": {"uid": 0, "key": ["lantern"], "content": "A lantern."}}}
        with world.client(owner) as client:
            made = client.post(
                "/api/v1/lorebooks/import?on_duplicate=copy", json=book, headers=headers
            )
            assert made.status_code == 201, made.text
        path = f"/api/v1/lorebooks/{made.json()['id']}{suffix}"
        return method, path, kwargs | {"headers": headers}

    return Case(action, build)


def _safety_case(action: str, method: str, path: str, **kwargs: Any) -> Case:
    """A safety route; "{owner}" in the path, query or body is the workspace owner's id
    (a player or an unassigned therapist reaching it is refused like a stranger)."""

    def build(world: World, workspace: str, role: str) -> Request:
        owner = world.users["owner" if workspace == world.own else "stranger"]

        def fill(value: Any) -> Any:
            if isinstance(value, str):
                return value.replace("{owner}", owner)
            if isinstance(value, dict):
                return {k: fill(v) for k, v in value.items()}
            return value

        extra = {k: fill(v) for k, v in kwargs.items()}
        return method, fill(path), extra | {"headers": {"X-Workspace": workspace}}

    return Case(action, build)


# --- the studio's blueprints, recipes and chat to structure (#18) ---------------------


def _studio_item(world: World, workspace: str, kind: str) -> str:
    """A fresh blueprint or recipe in `workspace`, made by its owner (saved twice:
    versions 1 and 2)."""
    owner = "owner" if workspace == world.own else "stranger"
    headers = {"X-Workspace": workspace}
    body: dict[str, Any] = (
        {"name": "Matrix campaign", "game_system": "mothership"}
        if kind == "blueprints"
        else {
            "name": "Matrix portrait",
            "template": "portrait of {subject}",
            "slots": [{"name": "subject"}],
        }
    )
    with world.client(owner) as client:
        made = client.post(f"/api/v1/{kind}", json=body, headers=headers)
        assert made.status_code == 201, made.text
        item_id: str = made.json()["id"]
        changed = client.patch(
            f"/api/v1/{kind}/{item_id}", json={"name": "Matrix renamed"}, headers=headers
        )
        assert changed.status_code == 200, changed.text
    return item_id


def _studio_case(action: str, method: str, kind: str, suffix: str, **kwargs: Any) -> Case:
    """A route about one blueprint or recipe ("blueprints", "recipes")."""

    def build(world: World, workspace: str, role: str) -> Request:
        item_id = _studio_item(world, workspace, kind)
        path = f"/api/v1/{kind}/{item_id}{suffix}"
        return method, path, kwargs | {"headers": {"X-Workspace": workspace}}

    return Case(action, build)


# --- file-editor and terminal sessions (#20) ---------------------------------------------


def _owner_of(world: World, workspace: str) -> str:
    return "owner" if workspace == world.own else "stranger"


def _new_file(world: World, workspace: str, role: str) -> Request:
    body = {"path": f"matrix/{uuid.uuid4().hex[:10]}.txt", "text": "one\n"}
    return "POST", "/api/v1/files", {"json": body, "headers": {"X-Workspace": workspace}}


def _file_case(action: str, method: str, suffix: str, **kwargs: Any) -> Case:
    """A route about one file (revisions 1 and 2), made fresh by the workspace's owner;
    "{proposal_id}" in the path is an open proposal of it."""

    def build(world: World, workspace: str, role: str) -> Request:
        headers = {"X-Workspace": workspace}
        with world.client(_owner_of(world, workspace)) as client:
            made = client.post("/api/v1/files", **_new_file(world, workspace, role)[2])
            assert made.status_code == 201, made.text
            file_id = made.json()["id"]
            edited = client.put(
                f"/api/v1/files/{file_id}", json={"text": "one\ntwo\n"}, headers=headers
            )
            assert edited.status_code == 200, edited.text
            path = f"/api/v1/files/{file_id}{suffix}"
            if "{proposal_id}" in path:
                proposed = client.post(
                    f"/api/v1/files/{file_id}/proposals", json={"text": "3\n"}, headers=headers
                )
                assert proposed.status_code == 201, proposed.text
                path = path.replace("{proposal_id}", proposed.json()["id"])
        return method, path, kwargs | {"headers": headers}

    return Case(action, build)


def _terminal_case(method: str, suffix: str, **kwargs: Any) -> Case:
    """A route about one terminal (running cat), opened fresh by the workspace's owner."""

    def build(world: World, workspace: str, role: str) -> Request:
        headers = {"X-Workspace": workspace}
        with world.client(_owner_of(world, workspace)) as client:
            opened = client.post("/api/v1/terminals", json={}, headers=headers)
            assert opened.status_code == 201, opened.text
        path = f"/api/v1/terminals/{opened.json()['id']}{suffix}"
        return method, path, kwargs | {"headers": headers}

    return Case("terminal.use", build)


def _studio_world_blueprint(world: World, workspace: str) -> str:
    """A fresh blueprint in `workspace`, linked to its shared story world."""
    ids = _world_shared(world, workspace)
    with world.client(_owner_of(world, workspace)) as client:
        made = client.post(
            "/api/v1/blueprints",
            json={"name": "Matrix campaign", "world_id": ids["world_id"]},
            headers={"X-Workspace": workspace},
        )
        assert made.status_code == 201, made.text
    blueprint_id: str = made.json()["id"]
    return blueprint_id


def _studio_job_case(suffix: str, **kwargs: Any) -> Case:
    """Queueing one of the studio's jobs on a blueprint linked to a world."""

    def build(world: World, workspace: str, role: str) -> Request:
        blueprint_id = _studio_world_blueprint(world, workspace)
        path = f"/api/v1/blueprints/{blueprint_id}{suffix}"
        return "POST", path, kwargs | {"headers": {"X-Workspace": workspace}}

    return Case("world.edit", build)


def _studio_packet_case() -> Case:
    """Reading a finished weekly recap, made by the workspace's owner."""

    def build(world: World, workspace: str, role: str) -> Request:
        headers = {"X-Workspace": workspace}
        blueprint_id = _studio_world_blueprint(world, workspace)
        with world.client(_owner_of(world, workspace)) as client:
            started = client.post(
                f"/api/v1/blueprints/{blueprint_id}/weekly-recap", headers=headers
            )
            assert started.status_code == 202, started.text
            job_id = started.json()["id"]
            for _ in range(500):
                job = client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
                if job["status"] in ("succeeded", "failed"):
                    break
                time.sleep(0.02)
        return "GET", f"/api/v1/studio/packets/{job_id}", {"headers": headers}

    return Case("world.read", build)


def _studio_hook_case(action: str, method: str, suffix: str) -> Case:
    """A route about one studio webhook, added by the workspace's owner."""

    def build(world: World, workspace: str, role: str) -> Request:
        headers = {"X-Workspace": workspace}
        with world.client(_owner_of(world, workspace)) as client:
            made = client.post(
                "/api/v1/studio/webhooks",
                json={"url": "http://127.0.0.1:9/matrix", "events": ["packet.ready"]},
                headers=headers,
            )
            assert made.status_code == 201, made.text
        path = f"/api/v1/studio/webhooks/{made.json()['id']}{suffix}"
        return method, path, {"headers": headers}

    return Case(action, build)


# What the crisis detector pauses a session on (the safety routes' resume needs one).
_CRISIS = "I want to kill myself"

# A two-line SillyTavern chat for the import route (interop, #5).
_INTEROP_CHAT = (
    b'{"user_name": "Ada", "character_name": "Sera", "chat_metadata": {}}\n'
    b'{"name": "Sera", "is_user": false, "mes": "Hello."}\n'
)


def _character_card() -> bytes:
    """A small PNG character card (it has an avatar, so every character route answers)."""
    from tests.data.cards.factory import png_card, v3_card

    return png_card(ccv3=v3_card("Matrix"))


def _character_case(action: str, method: str, suffix: str, **kwargs: Any) -> Case:
    """A route on one character, imported fresh by the workspace's owner."""

    def build(world: World, workspace: str, role: str) -> Request:
        owner = "owner" if workspace == world.own else "stranger"
        with world.client(owner) as client:
            created = client.post(
                "/api/v1/characters/import?on_duplicate=copy",
                content=_character_card(),
                headers={"X-Workspace": workspace, "Content-Type": "image/png"},
            )
            assert created.status_code == 201, created.text
        path = f"/api/v1/characters/{created.json()['id']}{suffix}"
        return method, path, kwargs | {"headers": {"X-Workspace": workspace}}

    return Case(action, build)


# (method, path template) of every workspace-scoped route -> what it does.
def _job_case(action: str, method: str, suffix: str) -> Case:
    """A route about one job: a finished workspace export, started by the owner."""

    def build(world: World, workspace: str, role: str) -> Request:
        owner = "owner" if workspace == world.own else "stranger"
        with world.client(owner) as client:
            started = client.post(f"/api/v1/workspaces/{workspace}/exports")
            assert started.status_code == 202, started.text
            job_id = started.json()["id"]
            for _ in range(500):
                if client.get(f"/api/v1/jobs/{job_id}", headers={"X-Workspace": workspace}).json()[
                    "status"
                ] in ("succeeded", "failed"):
                    break
                time.sleep(0.02)
        return method, f"/api/v1/jobs/{job_id}{suffix}", {"headers": {"X-Workspace": workspace}}

    return Case(action, build)


ROUTES: dict[tuple[str, str], Case] = {
    ("POST", "/api/v1/sessions"): _collection_case(
        "session.create", "POST", "/api/v1/sessions", json={"kind": "story", "title": "New"}
    ),
    ("GET", "/api/v1/sessions"): _collection_case("session.list", "GET", "/api/v1/sessions"),
    ("GET", "/api/v1/search"): _collection_case(
        "search", "GET", "/api/v1/search", params={"q": "lantern"}
    ),
    ("GET", "/api/v1/sessions/{session_id}"): _session_case("session.read", "GET", ""),
    ("PATCH", "/api/v1/sessions/{session_id}"): _session_case(
        "session.update", "PATCH", "", json={"title": "Renamed"}
    ),
    ("DELETE", "/api/v1/sessions/{session_id}"): _session_case("session.delete", "DELETE", ""),
    ("GET", "/openai/v1/models"): _collection_case("session.list", "GET", "/openai/v1/models"),
    ("POST", "/openai/v1/chat/completions"): _openai_chat_case(),
    ("POST", "/api/v1/sessions/{session_id}/fork"): _session_case(
        "session.play", "POST", "/fork", json={"at_turn": 1}
    ),
    ("GET", "/api/v1/sessions/{session_id}/messages"): _session_case(
        "session.read", "GET", "/messages"
    ),
    ("PATCH", "/api/v1/sessions/{session_id}/messages/{message_id}"): _session_case(
        "session.play", "PATCH", "/messages/{message_id}", json={"active": 0}
    ),
    ("GET", "/api/v1/sessions/{session_id}/events"): _session_case(
        "session.read", "GET", "/events"
    ),
    ("POST", "/api/v1/sessions/{session_id}/turns"): _session_case(
        "session.play", "POST", "/turns", json={"text": "Onward"}
    ),
    ("GET", "/api/v1/sessions/{session_id}/turns/{turn_id}/stream"): _session_case(
        "session.read", "GET", "/turns/{turn_id}/stream"
    ),
    # Its last turn has finished: an allowed caller is told so (409), where a refused
    # one learns nothing (403/404). Cancelling a running turn: tests/test_api.py.
    ("POST", "/api/v1/sessions/{session_id}/turns/{turn_id}/cancel"): replace(
        _session_case("session.play", "POST", "/turns/{turn_id}/cancel"), allowed_status=409
    ),
    ("GET", "/api/v1/workspaces/{workspace_id}"): _workspace_case("workspace.read", "GET", ""),
    # Feature flags: every member reads them; setting one to its default changes no
    # turn of the other cases here.
    ("GET", "/api/v1/flags"): _collection_case("workspace.read", "GET", "/api/v1/flags"),
    ("PUT", "/api/v1/flags/{name}"): _collection_case(
        "workspace.update", "PUT", "/api/v1/flags/world_extraction", json={"enabled": True}
    ),
    ("DELETE", "/api/v1/flags/{name}"): _collection_case(
        "workspace.update", "DELETE", "/api/v1/flags/world_extraction"
    ),
    # Installed plugins, on or off per workspace: no plugin is installed here, so an
    # allowed caller is told which are (422) where a refused one learns nothing.
    ("GET", "/api/v1/plugins"): _collection_case("workspace.read", "GET", "/api/v1/plugins"),
    ("PUT", "/api/v1/plugins/{name}"): replace(
        _collection_case(
            "workspace.update", "PUT", "/api/v1/plugins/absent", json={"enabled": False}
        ),
        allowed_status=422,
    ),
    ("GET", "/api/v1/formats"): _collection_case("workspace.read", "GET", "/api/v1/formats"),
    ("PATCH", "/api/v1/workspaces/{workspace_id}"): _workspace_case(
        "workspace.update", "PATCH", "", json={"name": "Renamed"}
    ),
    ("DELETE", "/api/v1/workspaces/{workspace_id}"): Case("workspace.delete", _delete_workspace),
    ("GET", "/api/v1/workspaces/{workspace_id}/members"): _workspace_case(
        "members.read", "GET", "/members"
    ),
    ("PUT", "/api/v1/workspaces/{workspace_id}/members/{user_id}"): Case(
        "members.manage", _put_member
    ),
    ("DELETE", "/api/v1/workspaces/{workspace_id}/members/{user_id}"): Case(
        "members.manage", _delete_member
    ),
    ("PUT", "/api/v1/workspaces/{workspace_id}/assignments"): Case("members.manage", _assign),
    ("GET", "/api/v1/workspaces/{workspace_id}/audit"): _workspace_case(
        "audit.read", "GET", "/audit"
    ),
    ("GET", "/api/v1/workspaces/{workspace_id}/secrets"): _workspace_case(
        "secrets.manage", "GET", "/secrets"
    ),
    ("PUT", "/api/v1/workspaces/{workspace_id}/secrets/{name}"): _workspace_case(
        "secrets.manage", "PUT", "/secrets/openai", json={"value": "sk-test"}
    ),
    ("DELETE", "/api/v1/workspaces/{workspace_id}/secrets/{name}"): Case(
        "secrets.manage", _delete_secret
    ),
    ("GET", "/api/v1/models"): _collection_case("workspace.read", "GET", "/api/v1/models"),
    ("GET", "/api/v1/models/health"): _collection_case(
        "workspace.read", "GET", "/api/v1/models/health"
    ),
    ("GET", "/api/v1/usage"): _collection_case("usage.read", "GET", "/api/v1/usage"),
    ("GET", "/api/v1/sessions/{session_id}/usage"): _session_case("usage.read", "GET", "/usage"),
    # --- world memory and lorebook routes (#4) ---
    ("POST", "/api/v1/lorebooks/import"): _collection_case(
        "world.edit", "POST", "/api/v1/lorebooks/import?on_duplicate=copy", json={"entries": {}}
    ),
    ("GET", "/api/v1/lorebooks"): _collection_case("world.read", "GET", "/api/v1/lorebooks"),
    ("GET", "/api/v1/lorebooks/{lorebook_id}"): _lorebook_case("world.read", "GET", ""),
    ("PATCH", "/api/v1/lorebooks/{lorebook_id}"): _lorebook_case(
        "world.edit", "PATCH", "", json={"name": "Renamed"}
    ),
    ("DELETE", "/api/v1/lorebooks/{lorebook_id}"): _lorebook_case("world.edit", "DELETE", ""),
    ("GET", "/api/v1/lorebooks/{lorebook_id}/export"): _lorebook_case(
        "world.read", "GET", "/export", params={"format": "novelai"}
    ),
    ("POST", "/api/v1/lorebooks/{lorebook_id}/entries"): _lorebook_case(
        "world.edit", "POST", "/entries", json={"keys": ["x"], "content": "X."}
    ),
    ("PATCH", "/api/v1/lorebooks/{lorebook_id}/entries/{uid}"): _lorebook_case(
        "world.edit", "PATCH", "/entries/0", json={"content": "Changed."}
    ),
    ("DELETE", "/api/v1/lorebooks/{lorebook_id}/entries/{uid}"): _lorebook_case(
        "world.edit", "DELETE", "/entries/0"
    ),
    ("POST", "/api/v1/lorebooks/{lorebook_id}/activate"): _lorebook_case(
        "world.read", "POST", "/activate", json={"text": "a lantern"}
    ),
    ("POST", "/api/v1/worlds"): _collection_case(
        "world.edit", "POST", "/api/v1/worlds", json={"name": "New world"}
    ),
    ("GET", "/api/v1/worlds"): _collection_case("world.read", "GET", "/api/v1/worlds"),
    ("POST", "/api/v1/worlds/import"): _collection_case(
        "world.edit",
        "POST",
        "/api/v1/worlds/import",
        json={"format": "taleweaver.world", "version": 1, "world": {"name": "I"}},
    ),
    ("GET", _W): _world_case("world.read", "GET", _W),
    ("PATCH", _W): _world_case("world.edit", "PATCH", _W, json={"name": "Renamed"}),
    ("DELETE", _W): _world_case("world.edit", "DELETE", _W),
    ("GET", _W + "/export"): _world_case("world.read", "GET", _W + "/export"),
    ("POST", _W + "/entities"): _world_case(
        "world.edit", "POST", _W + "/entities", json={"type": "npc", "name": "Ossian"}
    ),
    ("GET", _W + "/entities"): _world_case("world.read", "GET", _W + "/entities"),
    ("GET", _W + "/entities/{entity_id}"): _world_case(
        "world.read", "GET", _W + "/entities/{entity_id}"
    ),
    ("PATCH", _W + "/entities/{entity_id}"): _world_case(
        "world.edit", "PATCH", _W + "/entities/{entity_id}", json={"summary": "A smuggler."}
    ),
    ("DELETE", _W + "/entities/{entity_id}"): _world_case(
        "world.edit", "DELETE", _W + "/entities/{entity_id}"
    ),
    ("GET", _W + "/entities/{entity_id}/history"): _world_case(
        "world.read", "GET", _W + "/entities/{entity_id}/history"
    ),
    ("POST", _W + "/entities/{entity_id}/facts"): _world_case(
        "world.edit",
        "POST",
        "/api/v1/worlds/{world_id}/entities/{entity_id}/facts",
        json={"attribute": "home", "value": "Harrowgate"},
    ),
    ("GET", _W + "/facts"): _world_case("world.read", "GET", _W + "/facts"),
    ("DELETE", _W + "/facts/{fact_id}"): _world_case(
        "world.edit", "DELETE", _W + "/facts/{fact_id}"
    ),
    ("POST", _W + "/entities/{entity_id}/relations"): _world_case(
        "world.edit",
        "POST",
        "/api/v1/worlds/{world_id}/entities/{entity_id}/relations",
        json={"type": "rival_of", "target_id": "{other_entity_id}"},
    ),
    ("DELETE", _W + "/relations/{relation_id}"): _world_case(
        "world.edit", "DELETE", _W + "/relations/{relation_id}"
    ),
    ("POST", _W + "/entries"): _world_case(
        "world.edit", "POST", _W + "/entries", json={"title": "Lore", "body": "#tag"}
    ),
    ("GET", _W + "/entries"): _world_case("world.read", "GET", _W + "/entries"),
    ("GET", _W + "/entries/{entry_id}"): _world_case(
        "world.read", "GET", _W + "/entries/{entry_id}"
    ),
    ("PATCH", _W + "/entries/{entry_id}"): _world_case(
        "world.edit", "PATCH", _W + "/entries/{entry_id}", json={"body": "New"}
    ),
    ("DELETE", _W + "/entries/{entry_id}"): _world_case(
        "world.edit", "DELETE", _W + "/entries/{entry_id}"
    ),
    ("GET", _W + "/search"): _world_case("world.read", "GET", _W + "/search", params={"q": "Mira"}),
    ("GET", _W + "/review"): _world_case("world.read", "GET", _W + "/review"),
    ("POST", _W + "/review/{artifact_id}"): _world_case(
        "world.review", "POST", _W + "/review/{artifact_id}", json={"decision": "reject"}
    ),
    ("POST", _W + "/continuity"): _world_case("world.review", "POST", _W + "/continuity"),
    ("GET", _W + "/continuity"): _world_case("world.read", "GET", _W + "/continuity"),
    ("POST", _W + "/continuity/{finding_id}"): _world_case(
        "world.review", "POST", _W + "/continuity/{finding_id}", json={"action": "ignore"}
    ),
    ("GET", "/api/v1/sessions/{session_id}/turns/{turn_id}/context"): _session_case(
        "session.read", "GET", "/turns/{turn_id}/context"
    ),
    # --- a session's lorebooks (#14) ---
    ("GET", "/api/v1/sessions/{session_id}/lorebooks"): _session_case(
        "session.read", "GET", "/lorebooks"
    ),
    ("PUT", "/api/v1/sessions/{session_id}/lorebooks"): _session_case(
        "session.update", "PUT", "/lorebooks", json={"lorebook_ids": []}
    ),
    ("POST", "/api/v1/sessions/{session_id}/lorebooks"): _session_book_case("POST"),
    ("DELETE", "/api/v1/sessions/{session_id}/lorebooks/{lorebook_id}"): _session_book_case(
        "DELETE"
    ),
    ("POST", "/api/v1/sessions/{session_id}/turns/{turn_id}/apply"): _world_turn_case(
        "world.edit", "POST", "/apply", json={"target": "blueprint"}
    ),
    # --- the studio (#18) ---
    ("POST", "/api/v1/blueprints"): _collection_case(
        "world.edit", "POST", "/api/v1/blueprints", json={"name": "New campaign"}
    ),
    ("GET", "/api/v1/blueprints"): _collection_case("world.read", "GET", "/api/v1/blueprints"),
    ("GET", "/api/v1/blueprints/{blueprint_id}"): _studio_case(
        "world.read", "GET", "blueprints", ""
    ),
    ("PATCH", "/api/v1/blueprints/{blueprint_id}"): _studio_case(
        "world.edit", "PATCH", "blueprints", "", json={"premise": "A drowned crown."}
    ),
    ("DELETE", "/api/v1/blueprints/{blueprint_id}"): _studio_case(
        "world.edit", "DELETE", "blueprints", ""
    ),
    ("GET", "/api/v1/blueprints/{blueprint_id}/versions"): _studio_case(
        "world.read", "GET", "blueprints", "/versions"
    ),
    ("GET", "/api/v1/blueprints/{blueprint_id}/versions/{version}"): _studio_case(
        "world.read", "GET", "blueprints", "/versions/1"
    ),
    ("GET", "/api/v1/blueprints/{blueprint_id}/diff"): _studio_case(
        "world.read", "GET", "blueprints", "/diff", params={"from": 1, "to": 2}
    ),
    ("POST", "/api/v1/blueprints/{blueprint_id}/restore"): _studio_case(
        "world.edit", "POST", "blueprints", "/restore", json={"version": 1}
    ),
    ("GET", "/api/v1/blueprints/{blueprint_id}/markdown"): _studio_case(
        "world.read", "GET", "blueprints", "/markdown"
    ),
    ("POST", "/api/v1/recipes"): _collection_case(
        "world.edit",
        "POST",
        "/api/v1/recipes",
        json={"name": "Scene", "template": "a {place} at dusk", "slots": [{"name": "place"}]},
    ),
    ("GET", "/api/v1/recipes"): _collection_case(
        "world.read", "GET", "/api/v1/recipes", params={"q": "portrait"}
    ),
    ("GET", "/api/v1/recipes/{recipe_id}"): _studio_case("world.read", "GET", "recipes", ""),
    ("PATCH", "/api/v1/recipes/{recipe_id}"): _studio_case(
        "world.edit", "PATCH", "recipes", "", json={"tags": ["npc"]}
    ),
    ("DELETE", "/api/v1/recipes/{recipe_id}"): _studio_case("world.edit", "DELETE", "recipes", ""),
    ("GET", "/api/v1/recipes/{recipe_id}/versions"): _studio_case(
        "world.read", "GET", "recipes", "/versions"
    ),
    ("GET", "/api/v1/recipes/{recipe_id}/diff"): _studio_case(
        "world.read", "GET", "recipes", "/diff", params={"from": 1, "to": 2}
    ),
    ("POST", "/api/v1/recipes/{recipe_id}/restore"): _studio_case(
        "world.edit", "POST", "recipes", "/restore", json={"version": 1}
    ),
    ("POST", "/api/v1/recipes/{recipe_id}/render"): _studio_case(
        "world.read", "POST", "recipes", "/render", json={"slots": {"subject": "a smuggler"}}
    ),
    ("GET", "/api/v1/sessions/{session_id}/turns/{turn_id}/structure"): _session_case(
        "session.read", "GET", "/turns/{turn_id}/structure"
    ),
    ("POST", "/api/v1/sessions/{session_id}/turns/{turn_id}/structure"): _world_turn_case(
        "world.edit", "POST", "/structure", json={"entries": [{"title": "From the reply"}]}
    ),
    # --- the studio's jobs, exports, webhooks and policy (#18) ---
    ("POST", "/api/v1/blueprints/{blueprint_id}/session-one"): _studio_job_case("/session-one"),
    ("POST", "/api/v1/blueprints/{blueprint_id}/prep"): _studio_job_case("/prep", json={}),
    ("POST", "/api/v1/blueprints/{blueprint_id}/weekly-recap"): _studio_job_case("/weekly-recap"),
    ("GET", "/api/v1/studio/packets/{job_id}"): _studio_packet_case(),
    ("GET", "/api/v1/worlds/{world_id}/export/foundry"): _world_case(
        "workspace.export", "GET", _W + "/export/foundry"
    ),
    ("GET", "/api/v1/worlds/{world_id}/export/bundle"): _world_case(
        "workspace.export", "GET", _W + "/export/bundle", params={"format": "markdown"}
    ),
    ("POST", "/api/v1/studio/webhooks"): _collection_case(
        "workspace.update",
        "POST",
        "/api/v1/studio/webhooks",
        json={"url": "http://127.0.0.1:9/matrix"},
    ),
    ("GET", "/api/v1/studio/webhooks"): _collection_case(
        "workspace.read", "GET", "/api/v1/studio/webhooks"
    ),
    ("GET", "/api/v1/studio/webhooks/{hook_id}"): _studio_hook_case("workspace.read", "GET", ""),
    ("DELETE", "/api/v1/studio/webhooks/{hook_id}"): _studio_hook_case(
        "workspace.update", "DELETE", ""
    ),
    ("GET", "/api/v1/studio/webhooks/{hook_id}/deliveries"): _studio_hook_case(
        "workspace.read", "GET", "/deliveries"
    ),
    ("GET", "/api/v1/studio/policy"): _collection_case(
        "workspace.read", "GET", "/api/v1/studio/policy"
    ),
    ("PUT", "/api/v1/studio/policy"): _collection_case(
        "workspace.update", "PUT", "/api/v1/studio/policy", json={"redact_fields": ["premise"]}
    ),
    # --- file-editor and terminal sessions (#20) ---
    ("POST", "/api/v1/files"): Case("file.edit", _new_file),
    ("GET", "/api/v1/files"): _collection_case("file.read", "GET", "/api/v1/files"),
    ("GET", "/api/v1/files/{file_id}"): _file_case("file.read", "GET", ""),
    ("PUT", "/api/v1/files/{file_id}"): _file_case("file.edit", "PUT", "", json={"text": "new\n"}),
    ("GET", "/api/v1/files/{file_id}/versions"): _file_case("file.read", "GET", "/versions"),
    ("GET", "/api/v1/files/{file_id}/versions/{revision}"): _file_case(
        "file.read", "GET", "/versions/1"
    ),
    ("GET", "/api/v1/files/{file_id}/diff"): _file_case(
        "file.read", "GET", "/diff", params={"from": 1, "to": 2}
    ),
    ("POST", "/api/v1/files/{file_id}/revert"): _file_case(
        "file.edit", "POST", "/revert", json={"revision": 1}
    ),
    ("GET", "/api/v1/files/{file_id}/proposals"): _file_case("file.read", "GET", "/proposals"),
    ("POST", "/api/v1/files/{file_id}/assist"): _file_case(
        "file.edit", "POST", "/assist", json={"instruction": "Add a third line."}
    ),
    ("POST", "/api/v1/files/{file_id}/proposals"): _file_case(
        "file.edit", "POST", "/proposals", json={"text": "proposed\n"}
    ),
    ("POST", "/api/v1/files/{file_id}/proposals/{proposal_id}/accept"): _file_case(
        "file.edit", "POST", "/proposals/{proposal_id}/accept"
    ),
    ("POST", "/api/v1/files/{file_id}/proposals/{proposal_id}/reject"): _file_case(
        "file.edit", "POST", "/proposals/{proposal_id}/reject", json={}
    ),
    ("POST", "/api/v1/terminals"): _collection_case(
        "terminal.use", "POST", "/api/v1/terminals", json={}
    ),
    ("GET", "/api/v1/terminals"): _collection_case("terminal.use", "GET", "/api/v1/terminals"),
    ("GET", "/api/v1/terminals/{terminal_id}"): _terminal_case("GET", ""),
    ("GET", "/api/v1/terminals/{terminal_id}/events"): _terminal_case("GET", "/events"),
    ("GET", "/api/v1/terminals/{terminal_id}/stream"): _terminal_case(
        "GET", "/stream", params={"follow": "false"}
    ),
    ("POST", "/api/v1/terminals/{terminal_id}/input"): _terminal_case(
        "POST", "/input", json={"data": "hello\n"}
    ),
    ("POST", "/api/v1/terminals/{terminal_id}/resize"): _terminal_case(
        "POST", "/resize", json={"cols": 100, "rows": 30}
    ),
    ("POST", "/api/v1/terminals/{terminal_id}/signal"): _terminal_case(
        "POST", "/signal", json={"signal": "interrupt"}
    ),
    ("DELETE", "/api/v1/terminals/{terminal_id}"): _terminal_case("DELETE", ""),
    ("GET", "/api/v1/sessions/{session_id}/summaries"): _session_case(
        "session.read", "GET", "/summaries"
    ),
    ("POST", "/api/v1/sessions/{session_id}/summaries/rebuild"): _session_case(
        "session.update", "POST", "/summaries/rebuild"
    ),
    # --- character, companion and interop routes (#5) ---
    ("POST", "/api/v1/characters/import"): Case(
        "character.edit",
        lambda world, workspace, role: (
            "POST",
            "/api/v1/characters/import?on_duplicate=copy",
            {"content": _character_card(), "headers": {"X-Workspace": workspace}},
        ),
    ),
    ("GET", "/api/v1/characters"): _collection_case("character.read", "GET", "/api/v1/characters"),
    ("GET", "/api/v1/characters/{character_id}"): _character_case("character.read", "GET", ""),
    ("PATCH", "/api/v1/characters/{character_id}"): _character_case(
        "character.edit", "PATCH", "", json={"personality": "calm"}
    ),
    ("DELETE", "/api/v1/characters/{character_id}"): _character_case(
        "character.edit", "DELETE", ""
    ),
    ("GET", "/api/v1/characters/{character_id}/export"): _character_case(
        "character.read", "GET", "/export", params={"format": "json"}
    ),
    ("GET", "/api/v1/characters/{character_id}/avatar"): _character_case(
        "character.read", "GET", "/avatar"
    ),
    ("GET", "/api/v1/characters/{character_id}/relationship"): _character_case(
        "character.read", "GET", "/relationship"
    ),
    ("POST", "/api/v1/characters/{character_id}/sessions"): _character_case(
        "session.create", "POST", "/sessions", json={"greeting": 0}
    ),
    ("POST", "/api/v1/sessions/import"): _collection_case(
        "session.create", "POST", "/api/v1/sessions/import", content=_INTEROP_CHAT
    ),
    ("GET", "/api/v1/sessions/{session_id}/export"): _session_case(
        "session.read", "GET", "/export", params={"format": "jsonl"}
    ),
    ("GET", "/api/v1/workspaces/{workspace_id}/export"): _workspace_case(
        "workspace.export", "GET", "/export"
    ),
    ("POST", "/api/v1/workspaces/{workspace_id}/import"): Case("workspace.export", _import_bundle),
    # --- background jobs (#17) ---
    ("GET", "/api/v1/jobs"): _collection_case("workspace.read", "GET", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs/{job_id}"): _job_case("workspace.read", "GET", ""),
    ("POST", "/api/v1/jobs/{job_id}/cancel"): _job_case("workspace.update", "POST", "/cancel"),
    ("GET", "/api/v1/jobs/{job_id}/download"): _job_case("workspace.export", "GET", "/download"),
    ("POST", "/api/v1/workspaces/{workspace_id}/exports"): _workspace_case(
        "workspace.export", "POST", "/exports"
    ),
    ("POST", "/api/v1/worlds/{world_id}/reindex"): _world_case(
        "world.edit", "POST", "/api/v1/worlds/{world_id}/reindex"
    ),
    # --- safety and therapy routes (#6) ---
    ("GET", "/api/v1/safety/flags"): _safety_case(
        "safety.review", "GET", "/api/v1/safety/flags", params={"player_id": "{owner}"}
    ),
    ("POST", "/api/v1/sessions/{session_id}/safety/resume"): _session_case(
        "safety.review", "POST", "/safety/resume", opening=_CRISIS
    ),
    ("GET", "/api/v1/safety/content"): _safety_case("world.read", "GET", "/api/v1/safety/content"),
    ("PUT", "/api/v1/safety/content"): _safety_case(
        "safety.manage", "PUT", "/api/v1/safety/content", json={"forbidden": ["spiders"]}
    ),
    ("GET", "/api/v1/safety/worlds/{world_id}/content"): _safety_case(
        "world.read", "GET", "/api/v1/safety/worlds/w1/content"
    ),
    ("PUT", "/api/v1/safety/worlds/{world_id}/content"): _safety_case(
        "safety.manage", "PUT", "/api/v1/safety/worlds/w1/content", json={"forbidden": ["gore"]}
    ),
    ("GET", "/api/v1/safety/preferences/{user_id}"): _safety_case(
        "therapy.read", "GET", "/api/v1/safety/preferences/{owner}"
    ),
    ("PUT", "/api/v1/safety/preferences/{user_id}"): _safety_case(
        "therapy.write", "PUT", "/api/v1/safety/preferences/{owner}", json={"locale": "en-GB"}
    ),
    ("PUT", "/api/v1/safety/webhook"): _safety_case(
        "safety.review",
        "PUT",
        "/api/v1/safety/webhook",
        json={"url": "http://127.0.0.1:9/hook", "user_id": "{owner}"},
    ),
    ("GET", "/api/v1/safety/webhook"): _safety_case(
        "safety.review", "GET", "/api/v1/safety/webhook", params={"user_id": "{owner}"}
    ),
    ("POST", "/api/v1/safety/rules/reload"): _safety_case(
        "safety.manage", "POST", "/api/v1/safety/rules/reload"
    ),
    ("POST", "/api/v1/safety/check"): _safety_case(
        "safety.manage", "POST", "/api/v1/safety/check", json={"text": "I open the door"}
    ),
    ("GET", "/api/v1/players/{user_id}/profile"): _therapy_case("therapy.read", "GET", "/profile"),
    ("PUT", "/api/v1/players/{user_id}/profile"): _therapy_case(
        "therapy.write", "PUT", "/profile", json={"consent": {"therapy_data": True}}
    ),
    ("GET", "/api/v1/players/{user_id}/goals"): _therapy_case("therapy.read", "GET", "/goals"),
    ("POST", "/api/v1/players/{user_id}/goals"): _therapy_case(
        "therapy.write", "POST", "/goals", json={"title": "Breathe"}
    ),
    ("PATCH", "/api/v1/players/{user_id}/goals/{goal_id}"): _therapy_goal_case(
        "PATCH", json={"progress": 10}
    ),
    ("DELETE", "/api/v1/players/{user_id}/goals/{goal_id}"): _therapy_goal_case("DELETE"),
    ("GET", "/api/v1/players/{user_id}/markers"): _therapy_case("therapy.read", "GET", "/markers"),
    ("POST", "/api/v1/players/{user_id}/markers"): _therapy_case(
        "therapy.write", "POST", "/markers", json={"type": "insight"}
    ),
    ("GET", "/api/v1/players/{user_id}/assessments"): _therapy_case(
        "therapy.read", "GET", "/assessments"
    ),
    ("POST", "/api/v1/players/{user_id}/assessments"): _therapy_case(
        "therapy.write", "POST", "/assessments", json={"instrument": "gad7", "answers": [0] * 7}
    ),
    ("GET", "/api/v1/players/{user_id}/progress"): _therapy_case(
        "therapy.read", "GET", "/progress"
    ),
    ("GET", "/api/v1/players/{user_id}/emotions"): _therapy_case(
        "therapy.read", "GET", "/emotions"
    ),
    ("GET", "/api/v1/players/{user_id}/export"): _therapy_case("therapy.read", "GET", "/export"),
    ("POST", "/api/v1/therapy/compatibility"): Case("therapy.read", _therapy_compatibility),
    ("POST", "/api/v1/players/{user_id}/flags/{flag_id}/acknowledge"): Case(
        "safety.review", _therapy_flag_case
    ),
    ("GET", "/api/v1/therapy/players"): _safety_case(
        "members.read", "GET", "/api/v1/therapy/players"
    ),
}

# Routes that are not about one workspace: who may call them at all.
OTHER_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("POST", "/api/v1/auth/setup"): PUBLIC,
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("GET", "/api/v1/auth/oidc/login"): PUBLIC,
    ("GET", "/api/v1/auth/oidc/callback"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): SELF,
    ("GET", "/api/v1/auth/me"): SELF,
    ("PATCH", "/api/v1/auth/me"): SELF,
    ("GET", "/api/v1/auth/keys"): SELF,
    ("POST", "/api/v1/auth/keys"): SELF,
    ("DELETE", "/api/v1/auth/keys/{key_id}"): SELF,
    ("GET", "/api/v1/workspaces"): SELF,
    ("POST", "/api/v1/workspaces"): SELF,
    ("GET", "/api/v1/users"): INSTANCE_ADMIN,
    ("POST", "/api/v1/users"): INSTANCE_ADMIN,
    ("GET", "/api/v1/therapy/instruments"): SELF,
}


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router, kept lazily
            yield from _api_routes(route.original_router.routes)


def _app_routes() -> dict[tuple[str, str], APIRoute]:
    app = create_app(Settings(model="scripted"))
    found: dict[tuple[str, str], APIRoute] = {}
    for route in _api_routes(list(app.routes)):
        for method in route.methods or ():
            found[(method, route.path)] = route
    assert found, "no routes found: has FastAPI changed how it keeps them?"
    return found


APP_ROUTES = _app_routes()


@pytest.mark.parametrize("key", sorted(APP_ROUTES), ids=lambda k: f"{k[0]} {k[1]}")
def test_every_route_declares_a_policy_and_has_a_matrix_entry(key: tuple[str, str]) -> None:
    route = APP_ROUTES[key]
    declared = route_policy(route.dependant)
    assert declared is not None, f"{key} declares no policy: add requires(...)"
    assert key in ROUTES or key in OTHER_ROUTES, f"{key} has no entry in the matrix"
    expected = ROUTES[key].action if key in ROUTES else OTHER_ROUTES[key]
    assert declared == expected


# Lists and searches are narrowed to the sessions a role may see, never refused
# (test_a_player_reaches_their_own_sessions_only checks the narrowing).
FILTERED = {"session.list", "search"}


def test_the_spec_names_every_action_the_policy_knows() -> None:
    assert set(SPEC) == {action.value for action in Action}


@pytest.mark.parametrize(
    ("action", "role"), list(itertools.product(sorted(SPEC), ROLES)), ids=lambda v: str(v)
)
def test_the_policy_decides_what_the_spec_says(action: str, role: str) -> None:
    """The whole role x action table, about the owner's workspace, sessions and
    records (a player or therapist who is not assigned sees only their own)."""
    decision = decide(Role(role), Action(action), principal_id=f"{role}-user")
    if action in FILTERED:
        assert decision.allowed == (role in SPEC[action])
    else:
        assert may_see(decision, owner_id="owner-user") == (role in SPEC[action])
    # Roles limited to their own sessions are allowed on those.
    assert may_see(decision, owner_id=f"{role}-user") == (Action(action) in GRANTS[Role(role)])


def _allowed_role(action: str) -> str:
    """The least privileged role SPEC allows (ROLES runs from most to least)."""
    return [role for role in ROLES if role in SPEC[action]][-1]


def _refused_roles(action: str) -> list[str]:
    """Roles SPEC refuses: the most privileged one refused by its grants, and the
    most privileged one granted the action but refused the owner's session or
    records (players, therapists)."""
    refused = [role for role in ROLES if role not in SPEC[action]]
    by_grant = [role for role in refused if Action(action) not in GRANTS[Role(role)]]
    by_owner = [role for role in refused if Action(action) in GRANTS[Role(role)]]
    return by_grant[:1] + by_owner[:1]


def _call(world: World, key: tuple[str, str], role: str, workspace: str) -> Response:
    method, path, kwargs = ROUTES[key].build(world, workspace, role)
    with world.client(role) as client:
        return client.request(method, path, **kwargs)


def _route_id(key: tuple[str, str]) -> str:
    return f"{key[0]} {key[1]}"


ALLOWED = [
    pytest.param(key, role, id=f"{_route_id(key)} as {role}")
    for key, case in sorted(ROUTES.items())
    for role in [_allowed_role(case.action)]
]
REFUSED = [
    pytest.param(key, role, id=f"{_route_id(key)} as {role}")
    for key, case in sorted(ROUTES.items())
    for role in _refused_roles(case.action)
]


@pytest.mark.parametrize(("key", "role"), ALLOWED)
def test_an_allowed_role_succeeds(world: World, key: tuple[str, str], role: str) -> None:
    response = _call(world, key, role, world.own)
    expected = ROUTES[key].allowed_status
    if expected is not None:
        assert response.status_code == expected, (response.status_code, response.text)
    else:
        assert 200 <= response.status_code < 300, (response.status_code, response.text)


@pytest.mark.parametrize(("key", "role"), REFUSED)
def test_a_refused_role_is_refused(world: World, key: tuple[str, str], role: str) -> None:
    response = _call(world, key, role, world.own)
    # Refused by its grants: forbidden. Granted, but about someone else's session or
    # records: they do not exist for this role (the webhook routes say 403 instead).
    granted = Action(ROUTES[key].action) in GRANTS[Role(role)]
    expected = (403, 404) if granted else (403,)
    assert response.status_code in expected, (response.status_code, response.text)


@pytest.mark.parametrize("key", sorted(ROUTES), ids=_route_id)
def test_another_tenants_workspace_does_not_exist(world: World, key: tuple[str, str]) -> None:
    # The owner of A, with every right there, is a stranger in B.
    response = _call(world, key, "owner", world.foreign)
    assert response.status_code == 404, (response.status_code, response.text)


@pytest.mark.parametrize("key", sorted(ROUTES), ids=lambda k: f"{k[0]} {k[1]}")
def test_workspace_routes_refuse_requests_without_credentials(
    world: World, key: tuple[str, str]
) -> None:
    method, path, kwargs = ROUTES[key].build(world, world.own, "owner")
    with world.caller() as anonymous:
        response = anonymous.request(method, path, **kwargs)
    assert response.status_code == 401


def test_self_routes_need_a_signed_in_principal(world: World) -> None:
    with world.caller() as anonymous:
        assert anonymous.get("/api/v1/auth/me").status_code == 401
        assert anonymous.get("/api/v1/workspaces").status_code == 401
    with world.client("viewer") as viewer:
        me = viewer.get("/api/v1/auth/me").json()
        assert me["user_id"] == world.users["viewer"]
        listed = {w["id"] for w in viewer.get("/api/v1/workspaces").json()}
        assert world.own in listed and world.foreign not in listed


def test_a_signed_in_principal_renames_only_themselves(world: World) -> None:
    def names() -> dict[str, str]:
        with world.client("admin-of-instance") as admin:
            return {u["id"]: u["display_name"] for u in admin.get("/api/v1/users").json()}

    before = names()
    with world.caller() as anonymous:
        assert anonymous.patch("/api/v1/auth/me", json={"display_name": "X"}).status_code == 401
    with world.client("viewer") as viewer:
        renamed = viewer.patch("/api/v1/auth/me", json={"display_name": " Mira "})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["id"] == world.users["viewer"]
        assert renamed.json()["display_name"] == "Mira"
        assert viewer.get("/api/v1/auth/me").json()["display_name"] == "Mira"
        assert viewer.patch("/api/v1/auth/me", json={"display_name": "  "}).status_code == 422
        assert names() == before | {world.users["viewer"]: "Mira"}  # nobody else renamed
        viewer.patch("/api/v1/auth/me", json={"display_name": before[world.users["viewer"]]})
    assert names() == before


@pytest.mark.parametrize("role", ROLES)
def test_only_instance_admins_manage_accounts(world: World, role: str) -> None:
    with world.client(role) as client:
        assert client.get("/api/v1/users").status_code == 403
    with world.client("admin-of-instance") as admin:
        assert admin.get("/api/v1/users").status_code == 200


def test_a_player_reaches_their_own_sessions_only(world: World) -> None:
    with world.client("player") as player:
        mine = player.post(
            "/api/v1/sessions",
            json={"kind": "story", "title": "Mine"},
            headers={"X-Workspace": world.own},
        ).json()["id"]
        assert player.post(f"/api/v1/sessions/{mine}/turns", json={"text": "Go"}).status_code == 201
        listed = player.get("/api/v1/sessions", headers={"X-Workspace": world.own}).json()
        owners_sessions = _new_session(world, world.own)
        listed = player.get("/api/v1/sessions", headers={"X-Workspace": world.own}).json()
        ids = {s["id"] for s in listed["items"]}
        assert mine in ids and owners_sessions not in ids
        hits = player.get(
            "/api/v1/search", params={"q": "lantern"}, headers={"X-Workspace": world.own}
        ).json()
        assert {h["session_id"] for h in hits} <= {mine}


def test_a_therapist_reads_assigned_players_sessions_but_cannot_play_them(world: World) -> None:
    with world.client("player2") as player:
        theirs = player.post(
            "/api/v1/sessions",
            json={"kind": "story", "title": "Therapy"},
            headers={"X-Workspace": world.own},
        ).json()["id"]
    with world.client("therapist") as therapist:
        assert therapist.get(f"/api/v1/sessions/{theirs}").status_code == 404
        with world.client("owner") as owner:
            owner.put(
                f"/api/v1/workspaces/{world.own}/assignments",
                json={
                    "therapist_id": world.users["therapist"],
                    "player_id": world.users["player2"],
                },
            ).raise_for_status()
        assert therapist.get(f"/api/v1/sessions/{theirs}").status_code == 200
        played = therapist.post(f"/api/v1/sessions/{theirs}/turns", json={"text": "Hi"})
        assert played.status_code == 403


def test_a_key_limited_to_one_workspace_sees_no_other(world: World) -> None:
    with world.client("owner") as owner:
        other = owner.post("/api/v1/workspaces", json={"name": "Other"}).json()["id"]
        limited = owner.post(
            "/api/v1/auth/keys", json={"name": "ci", "scopes": ["write"], "workspace_id": world.own}
        ).json()["key"]
    headers = {"Authorization": f"Bearer {limited}"}
    with world.caller(headers) as client:
        assert client.get(f"/api/v1/workspaces/{world.own}").status_code == 200
        assert client.get(f"/api/v1/workspaces/{other}").status_code == 404
        listed = client.get("/api/v1/sessions", headers={"X-Workspace": other})
        assert listed.status_code == 404


@pytest.mark.parametrize("scope", ["read", "write"])
def test_key_scopes_bound_what_a_key_may_do(world: World, scope: str) -> None:
    with world.client("owner") as owner:
        key = owner.post("/api/v1/auth/keys", json={"name": scope, "scopes": [scope]}).json()
    headers = {"Authorization": f"Bearer {key['key']}", "X-Workspace": world.own}
    with world.caller(headers) as client:
        assert client.get("/api/v1/sessions").status_code == 200
        created = client.post("/api/v1/sessions", json={"kind": "story", "title": "K"})
        assert created.status_code == (201 if scope == "write" else 403)
        managed = client.patch(f"/api/v1/workspaces/{world.own}", json={"name": "A"})
        assert managed.status_code == 403  # managing needs the admin scope
