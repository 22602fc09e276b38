"""Security as a user or an administrator meets it, over real loopback HTTP: when a
login is needed, first-run setup, password logins with CSRF and lockout, API keys,
rate limits, security headers and CORS, what errors give away, and the audit log."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
from limits import parse

from taleweaver.config import Settings
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from tests.conftest import REDIS_URL, free_port, need_redis

Serve = Callable[..., httpx.Client]
JSONDict = dict[str, Any]
T = TypeVar("T")

API = "/api/v1"
PASSWORD = "correct horse battery"
ADMIN = "admin@example.org"
PROBLEM = "application/problem+json"
SCRIPT = Path(sys.executable).with_name("taleweaver")


# --- world ------------------------------------------------------------------------------


def on_engine(settings: Settings, work: Callable[[Engine], Awaitable[T]]) -> T:
    """Run `work` on an engine of its own over the server's data, as the CLI does."""

    async def run() -> T:
        engine = await Engine.open(settings, model=ScriptedModel())
        try:
            return await work(engine)
        finally:
            await engine.close()

    return asyncio.run(run())


def create_account(settings: Settings, email: str, *, admin: bool = False) -> str:
    async def work(engine: Engine) -> str:
        user = await engine.accounts.create_user(email, password=PASSWORD, instance_admin=admin)
        return str(user["id"])

    return on_engine(settings, work)


def create_key(
    settings: Settings, user_id: str, scopes: list[str], workspace_id: str | None = None
) -> str:
    async def work(engine: Engine) -> str:
        token, _ = await engine.credentials.create_api_key(user_id, "test", scopes, workspace_id)
        return token

    return on_engine(settings, work)


def create_workspace(settings: Settings, owner_id: str, name: str) -> str:
    async def work(engine: Engine) -> str:
        found = await engine.accounts.create_workspace(owner_id, name, sensitive=False)
        return str(found["id"])

    return on_engine(settings, work)


def issue_setup_token(settings: Settings) -> str:
    token = on_engine(settings, lambda engine: engine.accounts.issue_setup_token())
    assert token is not None, "an admin exists already"
    return token


@pytest.fixture
def browsers() -> Iterator[Callable[..., httpx.Client]]:
    """More clients of a server: each its own cookie jar (a browser), or its own key."""
    opened: list[httpx.Client] = []

    def open_client(
        server: httpx.Client, *, key: str | None = None, address: str | None = None
    ) -> httpx.Client:
        client = httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {key}"} if key else None,
            transport=httpx.HTTPTransport(local_address=address) if address else None,
            timeout=30,
        )
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


@pytest.fixture
def admin_id(settings: Settings) -> str:
    return create_account(settings, ADMIN, admin=True)


@pytest.fixture
def locked_down(serve: Serve, admin_id: str) -> httpx.Client:
    """A server that asks everyone to log in, with one instance administrator."""
    return serve(require_login=True)


def login(client: httpx.Client, email: str = ADMIN, password: str = PASSWORD) -> str:
    """Log `client` in (its cookie jar keeps the session); return the CSRF token."""
    response = client.post(f"{API}/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    csrf: str = response.json()["csrf_token"]
    return csrf


def assert_problem(response: httpx.Response, status: int) -> JSONDict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: JSONDict = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


def cookie_attributes(response: httpx.Response, name: str) -> set[str]:
    """The attributes of the Set-Cookie header for `name`, lower-cased, values dropped
    except SameSite's."""
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        if first.startswith(f"{name}="):
            return {
                a.lower() if a.lower().startswith("samesite") else a.split("=")[0].lower()
                for a in attributes
            }
    raise AssertionError(f"no Set-Cookie for {name}")


def audit_actions(client: httpx.Client, workspace_id: str) -> list[str]:
    response = client.get(f"{API}/workspaces/{workspace_id}/audit", params={"limit": 500})
    assert response.status_code == 200, response.text
    return [entry["action"] for entry in response.json()]


# --- when a login is needed ---------------------------------------------------------------


def test_loopback_instance_with_one_account_needs_no_credentials(
    serve: Serve, admin_id: str
) -> None:
    client = serve()
    assert client.get(f"{API}/sessions").status_code == 200
    me = client.get(f"{API}/auth/me").json()
    assert me["via"] == "local"
    assert me["login_required"] is False


def test_second_account_turns_logins_on(serve: Serve, settings: Settings, admin_id: str) -> None:
    create_account(settings, "second@example.org")
    client = serve()
    assert_problem(client.get(f"{API}/sessions"), 401)


def test_require_login_answers_401_problem_with_www_authenticate(serve: Serve) -> None:
    client = serve(require_login=True)
    response = client.get(f"{API}/sessions")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_non_loopback_bind_requires_login(serve: Serve) -> None:
    client = serve(bind_host="0.0.0.0")
    response = client.get(f"{API}/sessions")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_problem(client.post(f"{API}/sessions", json={"kind": "story"}), 401)


def test_health_stays_open_when_login_is_required(serve: Serve) -> None:
    client = serve(require_login=True)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


# --- first-run setup ------------------------------------------------------------------------


def test_setup_token_creates_the_first_admin(serve: Serve, settings: Settings) -> None:
    client = serve(require_login=True)
    token = issue_setup_token(settings)
    response = client.post(
        f"{API}/auth/setup", json={"token": token, "email": ADMIN, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    assert response.json()["is_instance_admin"] is True
    login(client)
    assert client.get(f"{API}/auth/me").json()["email"] == ADMIN


def test_setup_token_works_once(serve: Serve, settings: Settings) -> None:
    client = serve(require_login=True)
    token = issue_setup_token(settings)
    body = {"token": token, "email": ADMIN, "password": PASSWORD}
    assert client.post(f"{API}/auth/setup", json=body).status_code == 201
    again = body | {"email": "intruder@example.org"}
    assert_problem(client.post(f"{API}/auth/setup", json=again), 401)


def test_wrong_setup_token_answers_401(serve: Serve, settings: Settings) -> None:
    client = serve(require_login=True)
    issue_setup_token(settings)
    body = {"token": "not-the-token", "email": ADMIN, "password": PASSWORD}
    assert_problem(client.post(f"{API}/auth/setup", json=body), 401)


def test_rejected_setup_leaves_the_token_usable(serve: Serve, settings: Settings) -> None:
    client = serve(require_login=True)
    token = issue_setup_token(settings)
    weak = {"token": token, "email": ADMIN, "password": "short"}
    assert_problem(client.post(f"{API}/auth/setup", json=weak), 422)
    good = weak | {"password": PASSWORD}
    assert client.post(f"{API}/auth/setup", json=good).status_code == 201


def test_no_setup_token_once_an_admin_exists(settings: Settings, admin_id: str) -> None:
    assert on_engine(settings, lambda engine: engine.accounts.issue_setup_token()) is None


# --- password logins, cookies and CSRF ------------------------------------------------------


def test_login_sets_an_httponly_samesite_session_cookie(locked_down: httpx.Client) -> None:
    response = locked_down.post(f"{API}/auth/login", json={"email": ADMIN, "password": PASSWORD})
    assert response.status_code == 200, response.text
    session = cookie_attributes(response, "tw_session")
    assert {"httponly", "samesite=lax", "path"} <= session
    assert "secure" not in session  # plain http: a Secure cookie would never come back
    csrf = cookie_attributes(response, "tw_csrf")
    assert "httponly" not in csrf  # the web UI's script reads it to echo it
    assert response.json()["csrf_token"] == response.cookies["tw_csrf"]


def test_login_session_reads_without_a_csrf_token(locked_down: httpx.Client) -> None:
    login(locked_down)
    me = locked_down.get(f"{API}/auth/me")
    assert me.status_code == 200
    assert me.json()["via"] == "session"


def test_state_change_without_csrf_token_is_forbidden(locked_down: httpx.Client) -> None:
    login(locked_down)
    response = locked_down.post(f"{API}/sessions", json={"kind": "story"})
    assert "x-csrf-token" in assert_problem(response, 403)["detail"]


def test_state_change_with_a_wrong_csrf_token_is_forbidden(locked_down: httpx.Client) -> None:
    login(locked_down)
    response = locked_down.post(
        f"{API}/sessions", json={"kind": "story"}, headers={"X-CSRF-Token": "forged"}
    )
    assert_problem(response, 403)


def test_state_change_with_the_csrf_token_succeeds(locked_down: httpx.Client) -> None:
    csrf = login(locked_down)
    response = locked_down.post(
        f"{API}/sessions", json={"kind": "story"}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status_code == 201, response.text


def test_logout_ends_the_session(locked_down: httpx.Client) -> None:
    csrf = login(locked_down)
    stolen = locked_down.cookies["tw_session"]
    response = locked_down.post(f"{API}/auth/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    assert "tw_session" not in locked_down.cookies
    replay = locked_down.get(f"{API}/auth/me", headers={"Cookie": f"tw_session={stolen}"})
    assert_problem(replay, 401)


# --- lockout -------------------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_account(locked_down: httpx.Client) -> None:
    for _ in range(5):
        wrong = {"email": ADMIN, "password": "wrong password!"}
        assert_problem(locked_down.post(f"{API}/auth/login", json=wrong), 401)
    right = locked_down.post(f"{API}/auth/login", json={"email": ADMIN, "password": PASSWORD})
    assert_problem(right, 429)
    assert 0 < int(right.headers["retry-after"]) <= 15 * 60 + 1
    assert "tw_session" not in right.cookies


def test_wrong_email_and_wrong_password_get_the_same_answer(locked_down: httpx.Client) -> None:
    no_account = {"email": "nobody@example.org", "password": PASSWORD}
    wrong_password = {"email": ADMIN, "password": "wrong password!"}
    first = assert_problem(locked_down.post(f"{API}/auth/login", json=no_account), 401)
    second = assert_problem(locked_down.post(f"{API}/auth/login", json=wrong_password), 401)
    assert {k: v for k, v in first.items() if k != "correlation_id"} == {
        k: v for k, v in second.items() if k != "correlation_id"
    }


def test_failed_and_locked_logins_are_audited(
    locked_down: httpx.Client,
    settings: Settings,
    admin_id: str,
    browsers: Callable[..., httpx.Client],
) -> None:
    victim = "victim@example.org"
    create_account(settings, victim)
    for _ in range(5):
        locked_down.post(f"{API}/auth/login", json={"email": victim, "password": "nope nope!"})
    locked_down.post(f"{API}/auth/login", json={"email": victim, "password": PASSWORD})
    admin = browsers(locked_down, key=create_key(settings, admin_id, ["admin"]))
    entries = admin.get(f"{API}/workspaces/local/audit", params={"limit": 500}).json()
    about_victim = [e["action"] for e in entries if e["actor"] == victim]
    assert about_victim.count("login.failed") == 5
    assert "login.locked" in about_victim


# --- API keys -------------------------------------------------------------------------------


@pytest.fixture
def admin_browser(locked_down: httpx.Client) -> tuple[httpx.Client, dict[str, str]]:
    """The administrator, logged in: the client and the CSRF header to send."""
    return locked_down, {"X-CSRF-Token": login(locked_down)}


def test_api_key_secret_is_shown_once_and_never_listed(
    admin_browser: tuple[httpx.Client, dict[str, str]],
) -> None:
    client, csrf = admin_browser
    created = client.post(
        f"{API}/auth/keys", json={"name": "script", "scopes": ["read"]}, headers=csrf
    )
    assert created.status_code == 201, created.text
    secret = created.json()["key"]
    assert secret.startswith("tw_")
    listed = client.get(f"{API}/auth/keys")
    assert [k["name"] for k in listed.json()] == ["script"]
    assert "key" not in listed.json()[0]
    assert secret.rsplit("_", 1)[1] not in listed.text


def test_api_key_authenticates_as_bearer_and_records_its_use(
    admin_browser: tuple[httpx.Client, dict[str, str]], browsers: Callable[..., httpx.Client]
) -> None:
    client, csrf = admin_browser
    created = client.post(
        f"{API}/auth/keys", json={"name": "script", "scopes": ["read"]}, headers=csrf
    ).json()
    assert created["last_used_at"] is None
    script = browsers(client, key=created["key"])
    me = script.get(f"{API}/auth/me").json()
    assert (me["via"], me["email"], me["scopes"]) == ("api_key", ADMIN, ["read"])
    [listed] = client.get(f"{API}/auth/keys").json()
    assert listed["last_used_at"] is not None


def test_revoked_api_key_answers_401(
    admin_browser: tuple[httpx.Client, dict[str, str]], browsers: Callable[..., httpx.Client]
) -> None:
    client, csrf = admin_browser
    created = client.post(
        f"{API}/auth/keys", json={"name": "script", "scopes": ["write"]}, headers=csrf
    ).json()
    script = browsers(client, key=created["key"])
    assert script.get(f"{API}/sessions").status_code == 200
    revoked = client.delete(f"{API}/auth/keys/{created['id']}", headers=csrf)
    assert revoked.json()["revoked_at"] is not None
    assert_problem(script.get(f"{API}/sessions"), 401)


def test_read_key_reads_but_cannot_write(
    locked_down: httpx.Client,
    settings: Settings,
    admin_id: str,
    browsers: Callable[..., httpx.Client],
) -> None:
    reader = browsers(locked_down, key=create_key(settings, admin_id, ["read"]))
    assert reader.get(f"{API}/sessions").status_code == 200
    assert_problem(reader.post(f"{API}/sessions", json={"kind": "story"}), 403)


def test_read_key_cannot_create_workspaces_or_keys(
    locked_down: httpx.Client,
    settings: Settings,
    admin_id: str,
    browsers: Callable[..., httpx.Client],
) -> None:
    reader = browsers(locked_down, key=create_key(settings, admin_id, ["read"]))
    assert_problem(reader.post(f"{API}/workspaces", json={"name": "mine"}), 403)
    wider = {"name": "escalate", "scopes": ["admin"]}
    assert_problem(reader.post(f"{API}/auth/keys", json=wider), 403)


def test_key_mints_only_keys_within_its_own_reach(
    locked_down: httpx.Client,
    settings: Settings,
    admin_id: str,
    browsers: Callable[..., httpx.Client],
) -> None:
    workspace = create_workspace(settings, admin_id, "A")
    limited = browsers(locked_down, key=create_key(settings, admin_id, ["write"], workspace))
    more_scope = {"name": "x", "scopes": ["admin"], "workspace_id": workspace}
    assert_problem(limited.post(f"{API}/auth/keys", json=more_scope), 403)
    every_workspace = {"name": "x", "scopes": ["write"]}
    assert_problem(limited.post(f"{API}/auth/keys", json=every_workspace), 403)
    narrower = {"name": "x", "scopes": ["read"], "workspace_id": workspace}
    assert limited.post(f"{API}/auth/keys", json=narrower).status_code == 201


def test_workspace_key_cannot_see_another_workspace(
    locked_down: httpx.Client,
    settings: Settings,
    admin_id: str,
    browsers: Callable[..., httpx.Client],
) -> None:
    a = create_workspace(settings, admin_id, "A")
    b = create_workspace(settings, admin_id, "B")
    key = browsers(locked_down, key=create_key(settings, admin_id, ["admin"], a))
    assert key.get(f"{API}/workspaces/{a}").status_code == 200
    assert_problem(key.get(f"{API}/workspaces/{b}"), 404)
    assert_problem(key.get(f"{API}/sessions", headers={"X-Workspace": b}), 404)
    assert [w["id"] for w in key.get(f"{API}/workspaces").json()] == [a]


# --- rate limits ----------------------------------------------------------------------------


def test_request_over_the_limit_answers_429_with_retry_after(serve: Serve) -> None:
    client = serve(rate_limit="3/minute")
    for _ in range(3):
        assert client.get(f"{API}/sessions").status_code == 200
    response = client.get(f"{API}/sessions")
    assert_problem(response, 429)
    assert 0 < int(response.headers["retry-after"]) <= 60


def test_each_route_has_its_own_budget(serve: Serve) -> None:
    client = serve(rate_limit="3/minute")
    for _ in range(4):
        client.get(f"{API}/sessions")
    assert client.get(f"{API}/auth/me").status_code == 200


def test_users_have_separate_budgets(
    serve: Serve, settings: Settings, browsers: Callable[..., httpx.Client]
) -> None:
    alice = create_key(settings, create_account(settings, "alice@example.org"), ["read"])
    bob = create_key(settings, create_account(settings, "bob@example.org"), ["read"])
    server = serve(rate_limit="3/minute")
    alice_client, bob_client = browsers(server, key=alice), browsers(server, key=bob)
    for _ in range(3):
        assert alice_client.get(f"{API}/sessions").status_code == 200
    assert_problem(alice_client.get(f"{API}/sessions"), 429)
    assert bob_client.get(f"{API}/sessions").status_code == 200


def test_login_budget_is_stricter_than_the_default() -> None:
    fields = Settings.model_fields
    login_limit = parse(str(fields["login_rate_limit"].default))
    default_limit = parse(str(fields["rate_limit"].default))
    per_second = [limit.amount / limit.get_expiry() for limit in (login_limit, default_limit)]
    assert per_second[0] < per_second[1]


def _is_local_address(address: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


def test_login_has_its_own_budget_per_client(
    serve: Serve, settings: Settings, admin_id: str, browsers: Callable[..., httpx.Client]
) -> None:
    if not _is_local_address("127.0.0.2"):
        pytest.skip("no second loopback address (127.0.0.2) to log in from")
    key = create_key(settings, admin_id, ["read"])
    client = serve(require_login=True, rate_limit="100/minute", login_rate_limit="2/minute")
    wrong = {"email": "nobody@example.org", "password": "wrong password!"}
    for _ in range(2):
        assert_problem(client.post(f"{API}/auth/login", json=wrong), 401)
    limited = client.post(f"{API}/auth/login", json=wrong)
    assert_problem(limited, 429)
    assert int(limited.headers["retry-after"]) > 0
    elsewhere = browsers(client, address="127.0.0.2")
    assert_problem(elsewhere.post(f"{API}/auth/login", json=wrong), 401)
    other_route = client.get(f"{API}/sessions", headers={"Authorization": f"Bearer {key}"})
    assert other_route.status_code == 200


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key namespace of this test's own in Redis, removed afterwards."""
    need_redis()
    prefix = f"taleweaver-test-{uuid.uuid4().hex}"
    yield prefix
    with redis.Redis.from_url(REDIS_URL) as connection:
        for key in connection.scan_iter(match=f"{prefix}*"):
            connection.delete(key)


def test_replicas_share_rate_limit_counters_through_redis(serve: Serve, redis_prefix: str) -> None:
    shared = {"rate_limit": "3/minute", "redis_url": REDIS_URL, "redis_key_prefix": redis_prefix}
    first, second = serve(**shared), serve(**shared)
    assert first.get(f"{API}/sessions").status_code == 200
    assert second.get(f"{API}/sessions").status_code == 200
    assert first.get(f"{API}/sessions").status_code == 200
    assert_problem(second.get(f"{API}/sessions"), 429)
    assert_problem(first.get(f"{API}/sessions"), 429)


# --- headers and CORS -----------------------------------------------------------------------


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "strict-transport-security" not in response.headers  # plain http


@pytest.mark.parametrize("path", [f"{API}/sessions", f"{API}/sessions/missing", "/healthz"])
def test_api_responses_carry_security_headers(serve: Serve, path: str) -> None:
    response = serve().get(path)
    assert_security_headers(response)
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


def test_docs_carry_security_headers(serve: Serve) -> None:
    response = serve().get("/docs")
    assert response.status_code == 200
    assert_security_headers(response)


def test_too_large_body_answer_carries_security_headers(serve: Serve) -> None:
    response = serve(max_body_bytes=100).post(f"{API}/sessions", content=b"x" * 200)
    assert_problem(response, 413)
    assert_security_headers(response)


def preflight(client: httpx.Client, origin: str) -> httpx.Response:
    return client.options(
        f"{API}/sessions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-csrf-token",
        },
    )


def test_cors_is_off_by_default(serve: Serve) -> None:
    client = serve()
    assert "access-control-allow-origin" not in preflight(client, "https://app.example").headers
    simple = client.get(f"{API}/sessions", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_cors_echoes_an_allowed_origin(serve: Serve) -> None:
    client = serve(cors_origins=["https://app.example"])
    response = preflight(client, "https://app.example")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["access-control-allow-credentials"] == "true"


def test_cors_refuses_a_foreign_origin(serve: Serve) -> None:
    client = serve(cors_origins=["https://app.example"])
    response = preflight(client, "https://evil.example")
    assert "access-control-allow-origin" not in response.headers
    simple = client.get(f"{API}/sessions", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


# --- what errors give away ------------------------------------------------------------------


def test_internal_error_is_a_bare_problem(serve: Serve, settings: Settings) -> None:
    client = serve()
    # Break the database under the running server: the next audit read fails inside.
    with sqlite3.connect(settings.data_dir / "taleweaver.db") as db:
        db.execute("ALTER TABLE audit_log RENAME TO audit_log_moved")
    response = client.get(f"{API}/workspaces/local/audit")
    body = assert_problem(response, 500)
    assert set(body) == {"type", "title", "status", "detail", "correlation_id"}
    assert body["correlation_id"] == response.headers["x-request-id"]
    for leak in ("Traceback", "audit_log", "sqlite", "SELECT", 'File "', "Error:"):
        assert leak not in response.text
    assert_security_headers(response)


def test_authorization_that_is_not_bearer_answers_401(serve: Serve) -> None:
    response = serve().get(f"{API}/sessions", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert "Bearer" in assert_problem(response, 401)["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_unknown_api_key_answers_401_without_echoing_it(serve: Serve) -> None:
    token = f"tw_{uuid.uuid4().hex[:16]}_guessed-secret-value"
    response = serve().get(f"{API}/sessions", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401)
    assert "guessed-secret-value" not in response.text


def test_invalid_login_body_does_not_echo_the_password(serve: Serve) -> None:
    secret = "hunter2-" * 200  # over the 1024-character limit
    response = serve().post(f"{API}/auth/login", json={"email": ADMIN, "password": secret})
    assert_problem(response, 422)
    assert "hunter2" not in response.text


def test_wrong_method_answers_405_with_allow(serve: Serve) -> None:
    response = serve().put(f"{API}/sessions")
    assert_problem(response, 405)
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}


# --- the audit log --------------------------------------------------------------------------


def test_admin_sees_security_actions_in_the_audit_log(
    admin_browser: tuple[httpx.Client, dict[str, str]],
) -> None:
    client, csrf = admin_browser
    user = client.post(
        f"{API}/users", json={"email": "new@example.org", "password": PASSWORD}, headers=csrf
    ).json()
    role = client.put(
        f"{API}/workspaces/local/members/{user['id']}", json={"role": "viewer"}, headers=csrf
    )
    assert role.status_code == 200, role.text
    key = client.post(
        f"{API}/auth/keys", json={"name": "k", "scopes": ["read"]}, headers=csrf
    ).json()
    client.delete(f"{API}/auth/keys/{key['id']}", headers=csrf)
    session = client.post(
        f"{API}/sessions", json={"kind": "story"}, headers=csrf | {"X-Workspace": "local"}
    ).json()
    assert client.delete(f"{API}/sessions/{session['id']}", headers=csrf).status_code == 204
    actions = audit_actions(client, "local")
    for action in (
        "user.created",
        "member.role_changed",
        "login.succeeded",
        "api_key.created",
        "api_key.revoked",
        "session.deleted",
    ):
        assert action in actions


def test_workspace_admin_sees_only_their_workspace_in_the_audit_log(
    locked_down: httpx.Client,
    settings: Settings,
    browsers: Callable[..., httpx.Client],
) -> None:
    owner = create_account(settings, "owner@example.org")
    workspace = create_workspace(settings, owner, "Owned")
    login(browsers(locked_down))  # the instance admin logs in: an instance-level entry
    key = browsers(locked_down, key=create_key(settings, owner, ["admin"]))
    entries = key.get(f"{API}/workspaces/{workspace}/audit").json()
    assert [e["action"] for e in entries] == ["workspace.created"]
    assert_problem(key.get(f"{API}/workspaces/local/audit"), 404)


def taleweaver(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The real console script, on the server's data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALEWEAVER_")}
    env.update(TALEWEAVER_DATA_DIR=str(settings.data_dir), TALEWEAVER_MODEL="scripted")
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def audited(admin_browser: tuple[httpx.Client, dict[str, str]], settings: Settings) -> Path:
    """A server whose audit log has a few entries; the path of its SQLite file."""
    client, csrf = admin_browser
    for name in ("one", "two", "three"):
        client.post(f"{API}/workspaces", json={"name": name}, headers=csrf)
    return settings.data_dir / "taleweaver.db"


def audit_seqs(database: Path) -> list[int]:
    with sqlite3.connect(database) as db:
        return [row[0] for row in db.execute("SELECT seq FROM audit_log ORDER BY seq")]


@pytest.mark.skipif(not SCRIPT.is_file(), reason=f"no console script at {SCRIPT}")
def test_audit_verify_reports_an_intact_log(audited: Path, settings: Settings) -> None:
    result = taleweaver(settings, "audit", "verify")
    assert result.returncode == 0, result.stderr
    assert f"audit log intact: {len(audit_seqs(audited))} entries verified" in result.stdout


@pytest.mark.skipif(not SCRIPT.is_file(), reason=f"no console script at {SCRIPT}")
def test_audit_verify_names_an_edited_entry(audited: Path, settings: Settings) -> None:
    seq = audit_seqs(audited)[2]
    with sqlite3.connect(audited) as db:
        db.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = ?", (seq,))
    result = taleweaver(settings, "audit", "verify")
    assert result.returncode == 1
    assert f"TAMPERED at entry {seq}" in result.stderr


@pytest.mark.skipif(not SCRIPT.is_file(), reason=f"no console script at {SCRIPT}")
def test_audit_verify_detects_a_deleted_entry(audited: Path, settings: Settings) -> None:
    seq = audit_seqs(audited)[2]
    with sqlite3.connect(audited) as db:
        db.execute("DELETE FROM audit_log WHERE seq = ?", (seq,))
    result = taleweaver(settings, "audit", "verify")
    assert result.returncode == 1
    assert f"TAMPERED at entry {seq + 1}" in result.stderr
    assert "missing" in result.stderr


def test_rate_limiting_fails_open_when_redis_is_unreachable(
    serve: Callable[..., httpx.Client],
) -> None:
    """An outage of the shared counters must not take the API down with it."""
    port = free_port()  # nothing listens there
    client = serve(redis_url=f"redis://127.0.0.1:{port}/0", rate_limit="1/minute")
    assert client.get("/api/v1/sessions").status_code == 200
    assert client.get("/api/v1/sessions").status_code == 200
