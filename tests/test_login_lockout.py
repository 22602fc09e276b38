"""Login lockout under concurrency, on SQLite and PostgreSQL: parallel guesses at
one account, from two replicas at once, get no more password checks than the
limit, and a right password in the middle of the burst is refused."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from taleweaver.auth import credentials, passwords
from taleweaver.config import Settings
from taleweaver.domain.errors import TooManyRequests, Unauthorized
from taleweaver.engine import Engine
from taleweaver.store.schema import audit_log, users
from tests.test_hostile_input import api, server_errors
from tests.test_summaries import settings

__all__ = ["settings"]  # the key-file settings fixture PostgreSQL needs
pytestmark = pytest.mark.dialects

EMAIL = "victim@example.org"
PASSWORD = "correct horse battery"
LIMIT = credentials.MAX_FAILED_LOGINS
LOCKED = "too many failed logins; try again later"  # the lockout's 429, not a rate limit's


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password the real hash check was asked about, in order."""
    seen: list[str] = []
    real = passwords.verify_password

    def counted(stored: str, password: str) -> bool:
        seen.append(password)
        return real(stored, password)

    monkeypatch.setattr(credentials, "verify_password", counted)
    return seen


def _outcome(result: Any) -> str:
    if isinstance(result, Unauthorized):
        return "wrong"
    if isinstance(result, TooManyRequests):
        return "locked"
    if isinstance(result, tuple):
        return "in"
    return f"unexpected {type(result).__name__}: {result}"


async def test_a_burst_of_guesses_gets_no_more_checks_than_the_limit(
    make_engine: Any, checks: list[str]
) -> None:
    replicas: list[Engine] = [await make_engine(), await make_engine()]
    await replicas[0].accounts.create_user(EMAIL, password=PASSWORD)
    guesses = [PASSWORD if i == 100 else f"guess number {i}" for i in range(200)]
    results = await asyncio.gather(
        *(
            replicas[i % 2].credentials.login(EMAIL, guess, client="burst")
            for i, guess in enumerate(guesses)
        ),
        return_exceptions=True,
    )
    outcomes = Counter(_outcome(r) for r in results)
    # No "database is locked", no 500 of any kind: each attempt is answered.
    assert set(outcomes) <= {"wrong", "locked"}, outcomes
    assert outcomes["wrong"] == LIMIT and outcomes["locked"] == 200 - LIMIT
    assert len(checks) == LIMIT and PASSWORD not in checks
    with pytest.raises(TooManyRequests):  # and the right password still waits
        await replicas[1].credentials.login(EMAIL, PASSWORD, client="after")
    async with replicas[0].db.read() as conn:
        audited = Counter(
            (await conn.execute(sa.select(audit_log.c.action).where(audit_log.c.actor == EMAIL)))
            .scalars()
            .all()
        )
    assert audited["login.failed"] == LIMIT and audited["login.locked"] == 200 - LIMIT + 1


async def test_the_right_password_before_the_limit_lets_you_in(
    engine: Engine, checks: list[str]
) -> None:
    await engine.accounts.create_user(EMAIL, password=PASSWORD)
    for i in range(LIMIT - 1):
        with pytest.raises(Unauthorized):
            await engine.credentials.login(EMAIL, f"guess number {i}", client="t")
    _, _, user = await engine.credentials.login(EMAIL, PASSWORD, client="t")
    assert user["email"] == EMAIL
    for i in range(LIMIT - 1):  # and the count started again
        with pytest.raises(Unauthorized):
            await engine.credentials.login(EMAIL, f"guess number {i}", client="t")
    await engine.credentials.login(EMAIL, PASSWORD, client="t")


async def test_a_lock_that_ran_out_starts_a_fresh_count(engine: Engine, checks: list[str]) -> None:
    await engine.accounts.create_user(EMAIL, password=PASSWORD)
    for i in range(LIMIT):
        with pytest.raises(Unauthorized):
            await engine.credentials.login(EMAIL, f"guess number {i}", client="t")
    with pytest.raises(TooManyRequests):
        await engine.credentials.login(EMAIL, PASSWORD, client="t")
    async with engine.db.write() as conn:  # fifteen minutes later
        past = credentials._now() - credentials.LOCKOUT
        await conn.execute(users.update().where(users.c.email == EMAIL).values(locked_until=past))
    for i in range(LIMIT - 1):
        with pytest.raises(Unauthorized):
            await engine.credentials.login(EMAIL, f"again {i}", client="t")
    await engine.credentials.login(EMAIL, PASSWORD, client="t")
    assert checks.count(PASSWORD) == 1  # refused while locked without being checked


async def test_parallel_guesses_at_a_missing_account_are_all_answered_alike(
    make_engine: Any,
) -> None:
    replicas: list[Engine] = [await make_engine(), await make_engine()]
    results = await asyncio.gather(
        *(
            replicas[i % 2].credentials.login("nobody@example.org", f"guess {i}", client="t")
            for i in range(60)
        ),
        return_exceptions=True,
    )
    assert Counter(_outcome(r) for r in results) == {"wrong": 60}


async def test_a_burst_over_http_gets_no_server_error_and_no_way_in(
    engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    await engine.accounts.create_user(EMAIL, password=PASSWORD)
    # The per-address login rate limit (10/minute) would answer most of the burst
    # itself: raised, so that every 429 is the lockout's.
    guarded = settings.model_copy(
        update={"require_login": True, "login_rate_limit": "100000/minute"}
    )
    async with api(engine, guarded) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/api/v1/auth/login",
                    json={"email": EMAIL, "password": PASSWORD if i == 100 else f"guess {i}"},
                )
                for i in range(200)
            )
        )
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {401: LIMIT, 429: 200 - LIMIT}, statuses
    assert {a.json()["detail"] for a in answers if a.status_code == 429} == {LOCKED}
    assert answers[100].status_code == 429 and "tw_session" not in answers[100].cookies
    assert server_errors(caplog.records) == []
