"""Single sign-on with OpenID Connect, end to end: a real browser-like client follows
redirects between Taleweaver and an OpenID provider, both on loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from taleweaver.auth import AuditLog, Role
from taleweaver.auth.sso import RoleMapping
from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput
from taleweaver.store.database import Database, sqlite_url
from tests.conftest import free_port
from tests.oidc_provider import Faults, OidcProvider

Serve = Callable[..., httpx.Client]
JSONDict = dict[str, Any]

API = "/api/v1"
LOGIN = f"{API}/auth/oidc/login"
CALLBACK = f"{API}/auth/oidc/callback"
ME = f"{API}/auth/me"
CLIENT_ID = "taleweaver-test"
CLIENT_SECRET = "a client secret: with odd characters/+"
ROLE_MAP = {"clinicians": "therapist", "taleweaver-admins": "admin"}
PASSWORD = "correct horse battery"


# --- world ------------------------------------------------------------------------------


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    with OidcProvider(CLIENT_ID, CLIENT_SECRET) as running:
        yield running


@pytest.fixture
def sso(serve: Serve, provider: OidcProvider) -> Callable[..., httpx.Client]:
    """Start Taleweaver with single sign-on through the test provider."""

    def start(**overrides: Any) -> httpx.Client:
        options: dict[str, Any] = {
            "oidc_issuer": provider.issuer,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
            "oidc_role_claim": "groups",
            "oidc_role_map": ROLE_MAP,
        }
        return serve(**(options | overrides))

    return start


@pytest.fixture
def app(sso: Callable[..., httpx.Client]) -> httpx.Client:
    return sso()


def sign_in(client: httpx.Client, next_path: str = ME) -> httpx.Response:
    """Click "sign in" and follow every redirect, as a browser would."""
    return client.get(LOGIN, params={"next": next_path}, follow_redirects=True)


def local(app: httpx.Client) -> httpx.Client:
    """The laptop's own user (no cookies): the instance admin while at most one
    account exists."""
    return httpx.Client(base_url=app.base_url, timeout=30)


def user_emails(app: httpx.Client) -> list[str]:
    with local(app) as admin:
        response = admin.get(f"{API}/users")
    assert response.status_code == 200, response.text
    return sorted(u["email"] for u in response.json())


def create_password_user(app: httpx.Client, email: str, *, admin: bool = False) -> JSONDict:
    with local(app) as client:
        response = client.post(
            f"{API}/users", json={"email": email, "password": PASSWORD, "instance_admin": admin}
        )
    assert response.status_code == 201, response.text
    body: JSONDict = response.json()
    return body


def role_in_local(app: httpx.Client, user_id: str) -> str | None:
    with local(app) as admin:
        response = admin.get(f"{API}/workspaces/local/members")
    assert response.status_code == 200, response.text
    return next((m["role"] for m in response.json() if m["user_id"] == user_id), None)


def audit(settings: Settings) -> list[JSONDict]:
    """Every audit entry, read straight from the server's database."""

    async def read() -> list[JSONDict]:
        db = Database(sqlite_url(settings.data_dir))
        try:
            return await AuditLog(db).entries(limit=500)
        finally:
            await db.dispose()

    return asyncio.run(read())


def assert_problem(response: httpx.Response, status: int) -> JSONDict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: JSONDict = response.json()
    assert body["status"] == status
    return body


# --- signing in -------------------------------------------------------------------------


def test_first_sign_in_creates_an_account_and_a_working_session(
    app: httpx.Client, provider: OidcProvider
) -> None:
    response = sign_in(app)

    assert response.status_code == 200, response.text
    me = response.json()
    assert me["email"] == "ada@example.org"
    assert me["via"] == "session"
    assert user_emails(app) == ["ada@example.org", "local@localhost"]
    callback = response.history[-1]
    assert callback.url.path == CALLBACK
    assert callback.status_code == 303
    assert callback.headers["location"] == ME
    cookies = callback.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("tw_session="))
    csrf = next(c for c in cookies if c.startswith("tw_csrf="))
    assert "HttpOnly" in session
    assert "HttpOnly" not in csrf
    assert any(c.startswith("tw_oidc=") and "Max-Age=0" in c for c in cookies)


def test_the_flow_sends_state_nonce_and_pkce_and_authenticates_the_client(
    app: httpx.Client, provider: OidcProvider
) -> None:
    start = app.get(LOGIN, params={"next": ME})

    assert start.status_code == 302
    location = httpx.URL(start.headers["location"])
    assert str(location).startswith(f"{provider.issuer}/authorize?")
    params = location.params
    assert params["client_id"] == CLIENT_ID
    assert params["scope"] == "openid email profile"
    assert params["redirect_uri"] == str(app.base_url).rstrip("/") + CALLBACK
    assert params["code_challenge_method"] == "S256"
    assert params["state"] and params["nonce"]
    state_cookie = next(c for c in start.headers.get_list("set-cookie") if "tw_oidc=" in c)
    assert "HttpOnly" in state_cookie
    assert "samesite=lax" in state_cookie.lower()
    assert "Path=/api/v1/auth/oidc" in state_cookie
    # The provider checks the secret, the one-time code and the PKCE verifier.
    assert app.get(location, follow_redirects=True).status_code == 200
    assert provider.token_requests[-1]["code_verifier"]


def test_behind_a_proxy_the_public_url_is_the_redirect_base(
    sso: Callable[..., httpx.Client],
) -> None:
    app = sso(public_url="https://tales.example.org/")

    start = app.get(LOGIN)

    params = httpx.URL(start.headers["location"]).params
    assert params["redirect_uri"] == f"https://tales.example.org{CALLBACK}"
    state_cookie = next(c for c in start.headers.get_list("set-cookie") if "tw_oidc=" in c)
    assert "Secure" in state_cookie


def test_a_second_sign_in_finds_the_same_account(app: httpx.Client, provider: OidcProvider) -> None:
    first = sign_in(app).json()["user_id"]
    # The address changed at the provider: the subject, not the email, finds the account.
    provider.user.email = "ada.lovelace@example.org"
    with httpx.Client(base_url=app.base_url, timeout=30) as browser:
        second = sign_in(browser)

    assert second.status_code == 200, second.text
    assert second.json()["user_id"] == first
    assert user_emails(app) == ["ada@example.org", "local@localhost"]


def test_a_verified_email_links_the_existing_password_account(
    app: httpx.Client, provider: OidcProvider
) -> None:
    existing = create_password_user(app, "ada@example.org")

    response = sign_in(app)

    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == existing["id"]
    assert user_emails(app) == ["ada@example.org", "local@localhost"]
    with httpx.Client(base_url=app.base_url, timeout=30) as browser:
        password = browser.post(
            f"{API}/auth/login", json={"email": "ada@example.org", "password": PASSWORD}
        )
    assert password.status_code == 200, password.text


@pytest.mark.parametrize("verified", [False, "false", None])
def test_an_unverified_email_never_links_an_existing_account(
    app: httpx.Client, provider: OidcProvider, verified: bool | str | None
) -> None:
    create_password_user(app, "ada@example.org")
    provider.user.email_verified = verified

    response = sign_in(app)

    problem = assert_problem(response, 403)
    assert "not verified" in problem["detail"]
    assert "tw_session" not in app.cookies
    assert user_emails(app) == ["ada@example.org", "local@localhost"]
    # Verified later, the same identity links: nothing half-made was left behind.
    provider.user.email_verified = True
    assert sign_in(app).status_code == 200


def test_an_unverified_email_creates_no_account(app: httpx.Client, provider: OidcProvider) -> None:
    provider.user.email_verified = False

    problem = assert_problem(sign_in(app), 403)

    assert "verified email" in problem["detail"]
    assert user_emails(app) == ["local@localhost"]


def test_without_auto_create_an_unknown_identity_is_refused(
    sso: Callable[..., httpx.Client],
) -> None:
    app = sso(oidc_auto_create=False)

    assert_problem(sign_in(app), 403)
    assert user_emails(app) == ["local@localhost"]


# --- roles from a claim -----------------------------------------------------------------


def test_the_groups_claim_maps_to_a_role_in_the_workspace(
    app: httpx.Client, provider: OidcProvider
) -> None:
    provider.user.groups = ["readers", "clinicians"]
    user_id = sign_in(app).json()["user_id"]
    assert role_in_local(app, user_id) == "therapist"

    provider.user.groups = ["taleweaver-admins"]
    assert sign_in(app).status_code == 200
    assert role_in_local(app, user_id) == "admin"


def test_the_first_mapped_value_wins(app: httpx.Client, provider: OidcProvider) -> None:
    provider.user.groups = ["taleweaver-admins", "clinicians"]

    user_id = sign_in(app).json()["user_id"]

    assert role_in_local(app, user_id) == "therapist"  # "clinicians" comes first in the map


def test_no_mapped_value_grants_no_role(app: httpx.Client, provider: OidcProvider) -> None:
    provider.user.groups = ["unrelated"]

    user_id = sign_in(app).json()["user_id"]

    assert role_in_local(app, user_id) is None


def test_a_claim_never_changes_an_owner(app: httpx.Client, provider: OidcProvider) -> None:
    owner = create_password_user(app, "ada@example.org", admin=True)
    provider.user.groups = ["clinicians"]

    assert sign_in(app).json()["user_id"] == owner["id"]

    assert role_in_local(app, owner["id"]) == "owner"


def test_role_mapping_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TALEWEAVER_OIDC_ISSUER", "https://id.example.org")
    monkeypatch.setenv("TALEWEAVER_OIDC_CLIENT_ID", "taleweaver")
    monkeypatch.setenv("TALEWEAVER_OIDC_ROLE_MAP", '{"clinicians": "therapist"}')

    settings = Settings()

    assert settings.oidc_enabled
    assert settings.oidc_role_map == {"clinicians": "therapist"}
    assert settings.oidc_workspace == "local"
    assert settings.oidc_auto_create


def test_no_claim_can_grant_ownership() -> None:
    with pytest.raises(ValidationError):
        Settings.model_validate({"oidc_role_map": {"bosses": "owner"}})
    with pytest.raises(InvalidInput):
        RoleMapping("groups", {"bosses": Role.OWNER}, "local")


# --- what is refused --------------------------------------------------------------------


def test_a_forged_state_is_refused_and_nothing_is_created(
    app: httpx.Client, provider: OidcProvider
) -> None:
    to_provider = app.get(LOGIN)
    back = app.get(to_provider.headers["location"])
    callback = httpx.URL(back.headers["location"])
    forged = callback.copy_set_param("state", "forged-state")

    problem = assert_problem(app.get(forged), 401)

    assert "state" in problem["detail"]
    assert user_emails(app) == ["local@localhost"]
    assert "tw_session" not in app.cookies


def test_a_callback_that_did_not_start_here_is_refused(
    app: httpx.Client, provider: OidcProvider
) -> None:
    to_provider = app.get(LOGIN)
    back = app.get(to_provider.headers["location"])

    with httpx.Client(timeout=30) as stranger:  # has no state cookie
        assert_problem(stranger.get(back.headers["location"]), 401)
    assert user_emails(app) == ["local@localhost"]


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        pytest.param(Faults(audience="another-client"), "'aud'", id="wrong-audience"),
        pytest.param(Faults(tampered=True), "signature", id="tampered-payload"),
        pytest.param(Faults(foreign_key=True), "signature", id="bad-signature"),
        pytest.param(Faults(expired=True), "expired", id="expired"),
        pytest.param(Faults(nonce="replayed-nonce"), "'nonce'", id="wrong-nonce"),
        pytest.param(Faults(issuer="http://127.0.0.1:1"), "'iss'", id="wrong-issuer"),
        pytest.param(Faults(deny="access_denied"), "access_denied", id="provider-denied"),
    ],
)
def test_an_invalid_sign_in_is_refused_and_nothing_is_created(
    app: httpx.Client, provider: OidcProvider, settings: Settings, faults: Faults, reason: str
) -> None:
    provider.faults = faults

    problem = assert_problem(sign_in(app), 401)

    assert reason in problem["detail"]
    assert user_emails(app) == ["local@localhost"]
    assert "tw_session" not in app.cookies
    actions = {e["action"] for e in audit(settings)}
    assert not actions & {"user.created", "identity.linked", "login.succeeded"}


def test_an_unreachable_provider_is_a_clear_problem(serve: Serve) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    app = serve(oidc_issuer=closed, oidc_client_id=CLIENT_ID)

    problem = assert_problem(app.get(LOGIN), 401)

    assert "could not be reached" in problem["detail"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil"])
def test_next_must_be_a_path_on_this_site(app: httpx.Client, target: str) -> None:
    problem = assert_problem(app.get(LOGIN, params={"next": target}), 422)

    assert "next" in problem["detail"]


def test_without_configuration_the_routes_do_not_exist(serve: Serve) -> None:
    app = serve()

    assert_problem(app.get(LOGIN), 404)
    assert_problem(app.get(CALLBACK, params={"code": "x", "state": "y"}), 404)


# --- the audit log ----------------------------------------------------------------------


def test_sign_in_linking_and_role_mapping_are_audited(
    app: httpx.Client, provider: OidcProvider, settings: Settings
) -> None:
    provider.user.groups = ["clinicians"]
    user_id = sign_in(app).json()["user_id"]

    entries = [e for e in audit(settings) if e["target"] == user_id or e["actor"] == user_id]
    actions = {e["action"]: e for e in entries}
    assert actions["user.created"]["actor"] == "sso"
    assert actions["identity.linked"]["details"] == {
        "provider": provider.issuer,
        "subject": "subject-ada",
        "email": "ada@example.org",
        "how": "created",
    }
    assert actions["role.mapped"]["workspace_id"] == "local"
    assert actions["role.mapped"]["details"]["to"] == "therapist"
    assert actions["login.succeeded"]["details"]["via"] == "sso"


def test_a_refused_link_is_audited(
    app: httpx.Client, provider: OidcProvider, settings: Settings
) -> None:
    create_password_user(app, "ada@example.org")
    provider.user.email_verified = False

    sign_in(app)

    refused = [e for e in audit(settings) if e["action"] == "login.failed"]
    assert refused[-1]["details"]["via"] == "sso"
    assert refused[-1]["actor"] == "ada@example.org"
