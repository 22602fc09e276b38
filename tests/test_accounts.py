"""Accounts, workspaces and memberships: the rules that keep a workspace governable."""

from __future__ import annotations

import pytest

from taleweaver.auth import LOCAL_USER_ID, Role
from taleweaver.config import Settings
from taleweaver.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from taleweaver.domain.sessions import SessionKind
from taleweaver.engine import Engine
from taleweaver.store.schema import users
from tests.conftest import META
from tests.test_hostile_input import api

PASSWORD = "correct horse battery"


async def _user(engine: Engine, name: str) -> str:
    user = await engine.accounts.create_user(f"{name}@example.com", password=PASSWORD)
    user_id: str = user["id"]
    return user_id


async def test_a_new_account_owns_a_personal_workspace(engine: Engine) -> None:
    user_id = await _user(engine, "mara")
    [personal] = await engine.accounts.workspaces_of(user_id)
    assert personal["role"] == "owner"
    assert await engine.accounts.default_workspace(user_id) == personal["id"]


async def test_the_laptops_own_user_is_called_player_until_they_choose_a_name(
    engine: Engine,
) -> None:
    assert (await engine.accounts.user(LOCAL_USER_ID))["display_name"] == "Player"
    renamed = await engine.accounts.set_display_name(LOCAL_USER_ID, "  Mira   Vale ", actor="cli")
    assert renamed["display_name"] == "Mira Vale"
    assert (await engine.accounts.user(LOCAL_USER_ID))["display_name"] == "Mira Vale"
    await engine.accounts.ensure_local_user()  # the next start keeps the chosen name
    assert (await engine.accounts.user(LOCAL_USER_ID))["display_name"] == "Mira Vale"


async def test_the_old_default_name_local_user_becomes_player(engine: Engine) -> None:
    async with engine.db.write() as conn:
        await conn.execute(
            users.update().where(users.c.id == LOCAL_USER_ID).values(display_name="Local user")
        )
    await engine.accounts.ensure_local_user()
    assert (await engine.accounts.user(LOCAL_USER_ID))["display_name"] == "Player"


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
async def test_a_display_name_is_one_to_200_characters(engine: Engine, name: str) -> None:
    with pytest.raises(InvalidInput):
        await engine.accounts.set_display_name(LOCAL_USER_ID, name, actor="cli")
    assert (await engine.accounts.user(LOCAL_USER_ID))["display_name"] == "Player"


async def test_renaming_an_unknown_account_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound):
        await engine.accounts.set_display_name("nobody", "Mira", actor="cli")


async def test_emails_are_unique_whatever_their_case(engine: Engine) -> None:
    await _user(engine, "mara")
    with pytest.raises(Conflict, match="exists already"):
        await engine.accounts.create_user("MARA@Example.com", password=PASSWORD)


@pytest.mark.parametrize(("email", "password"), [("not-an-email", PASSWORD), ("a@b.c", "short")])
async def test_bad_account_details_are_refused_and_nothing_is_written(
    engine: Engine, email: str, password: str
) -> None:
    with pytest.raises(InvalidInput):
        await engine.accounts.create_user(email, password=password)
    assert await engine.accounts.real_account_count() == 0


async def test_a_workspace_keeps_at_least_one_owner(engine: Engine) -> None:
    owner = await _user(engine, "owner")
    workspace = await engine.accounts.create_workspace(owner, "Clinic", sensitive=False)
    with pytest.raises(Conflict, match="at least one owner"):
        await engine.accounts.set_member(
            workspace["id"], owner, Role.ADMIN, actor=owner, actor_role=Role.OWNER
        )
    with pytest.raises(Conflict, match="at least one owner"):
        await engine.accounts.remove_member(
            workspace["id"], owner, actor=owner, actor_role=Role.OWNER
        )
    assert await engine.accounts.role_of(owner, workspace["id"]) == Role.OWNER


async def test_only_an_owner_hands_out_or_takes_away_ownership(engine: Engine) -> None:
    owner_id, admin_id, other_id = [await _user(engine, n) for n in ("owner", "admin", "other")]
    ws = (await engine.accounts.create_workspace(owner_id, "Studio", sensitive=False))["id"]
    await engine.accounts.set_member(
        ws, admin_id, Role.ADMIN, actor=owner_id, actor_role=Role.OWNER
    )
    with pytest.raises(Forbidden):
        await engine.accounts.set_member(
            ws, other_id, Role.OWNER, actor=admin_id, actor_role=Role.ADMIN
        )
    with pytest.raises(Forbidden):
        await engine.accounts.remove_member(ws, owner_id, actor=admin_id, actor_role=Role.ADMIN)
    await engine.accounts.set_member(
        ws, other_id, Role.EDITOR, actor=admin_id, actor_role=Role.ADMIN
    )
    assert await engine.accounts.role_of(other_id, ws) == Role.EDITOR


async def test_a_workspace_with_sessions_is_not_deleted(engine: Engine) -> None:
    owner = await _user(engine, "owner")
    ws = (await engine.accounts.create_workspace(owner, "Busy", sensitive=False))["id"]
    await engine.sessions.create(
        ws, kind=SessionKind.STORY, title="T", owner_id=owner, metadata=META
    )
    with pytest.raises(Conflict, match="still has 1 session"):
        await engine.accounts.delete_workspace(ws, actor=owner)
    assert (await engine.accounts.workspace(ws))["id"] == ws


async def test_the_setup_token_works_once(engine: Engine) -> None:
    token = await engine.accounts.issue_setup_token()
    assert token is not None
    admin = await engine.accounts.complete_setup(token, "root@example.com", PASSWORD)
    assert admin["is_instance_admin"]
    with pytest.raises(Unauthorized):
        await engine.accounts.complete_setup(token, "again@example.com", PASSWORD)
    assert await engine.accounts.issue_setup_token() is None  # an admin exists now


async def test_the_first_admin_also_owns_the_laptop_workspace(engine: Engine) -> None:
    token = await engine.accounts.issue_setup_token()
    assert token is not None
    admin = await engine.accounts.complete_setup(token, "root@example.com", PASSWORD)
    assert await engine.accounts.role_of(admin["id"], "local") == Role.OWNER


async def test_therapists_are_assigned_only_to_members_of_the_workspace(engine: Engine) -> None:
    owner_id, therapist_id, outsider_id = [await _user(engine, n) for n in ("o", "t", "x")]
    ws = (await engine.accounts.create_workspace(owner_id, "Clinic", sensitive=False))["id"]
    await engine.accounts.set_member(
        ws, therapist_id, Role.THERAPIST, actor=owner_id, actor_role=Role.OWNER
    )
    with pytest.raises(InvalidInput, match="player must be a member"):
        await engine.accounts.assign(ws, therapist_id, outsider_id, actor=owner_id)
    assert await engine.accounts.assigned_players(ws, therapist_id) == frozenset()


async def test_the_workspace_list_marks_where_requests_act_by_default(
    engine: Engine, settings: Settings
) -> None:
    """An instance admin owns a personal workspace and the laptop's: the list says
    which one a request without X-Workspace acts in, as the sessions list does."""
    token = await engine.accounts.issue_setup_token()
    assert token is not None
    await engine.accounts.complete_setup(token, "root@example.com", PASSWORD)
    async with api(engine, settings.model_copy(update={"require_login": True})) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"email": "root@example.com", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        listed = (await client.get("/api/v1/workspaces")).json()
        assert len(listed) == 2
        (default,) = [w for w in listed if w["default"]]
        created = await client.post(
            "/api/v1/sessions",
            json={"kind": "story", "title": "Here"},
            headers={"x-csrf-token": login.json()["csrf_token"]},
        )
        assert created.status_code == 201, created.text
        (other,) = [w for w in listed if not w["default"]]
        for workspace, holds in ((default, True), (other, False)):
            page = await client.get("/api/v1/sessions", headers={"x-workspace": workspace["id"]})
            ids = [item["id"] for item in page.json()["items"]]
            assert (created.json()["id"] in ids) is holds
