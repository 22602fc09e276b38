"""The whole API fuzzed from its own OpenAPI schema with schemathesis, against the real
app in process (its whole ASGI stack, lifespan included; the HTTP server itself is
tested in tests/test_api.py and by the CLI's `serve`): no request may cause a server
error, and every answer must be one the schema documents, in status, content type,
headers and body. Once in single-user mode, over a world with a played session, and
once as the holder of an API key on an instance that requires a login. Deterministic
and bounded: a fixed seed, five examples per operation (each operation's own tests
cover its behaviour; this finds what no one thought to write)."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis import APIOperation, Case
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from taleweaver.api import create_app
from taleweaver.config import Settings
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from tests.conftest import POSTGRES_URL, _postgres, need_postgres

OperationCase = Case[APIOperation[Any, Any, Any, Any]]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Hypothesis reuses each test's server across its examples, on purpose.
FUZZ_SETTINGS = hypothesis_settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)


def _schemas() -> tuple[schemathesis.BaseSchema, schemathesis.BaseSchema, schemathesis.BaseSchema]:
    """The app's OpenAPI document (building it opens no database: startup does), to
    fuzz with and without the coverage phase, and with NUL characters in strings."""
    document = create_app(Settings(model="scripted")).openapi()

    def schema(coverage: bool, nul: bool = False) -> schemathesis.BaseSchema:
        phases = {"stateful": {"enabled": False}, "coverage": {"enabled": coverage}}
        generation: dict[str, Any] = {
            "max-examples": 5,
            "deterministic": True,
            "database": "none",
        }
        if nul:
            generation["allow-x00"] = True
        config = schemathesis.Config.from_dict(
            {"seed": 20251124, "generation": generation, "phases": phases}
        )
        return schemathesis.openapi.from_dict(document, config=config)

    return schema(coverage=True), schema(coverage=False), schema(coverage=False, nul=True)


# The coverage phase sends every case the schema defines (each missing, wrong-typed
# or out-of-range value: ~50 requests an operation); it runs once, as the key holder,
# whose instance has every operation. Validation answers the same in single-user
# mode, which is fuzzed with five examples an operation.
schema, fuzz_only, with_nul = _schemas()


# Where the in-process client sends requests.
BASE_URL = f"http://{asgi.HOST}"


@dataclass
class Target:
    """A running app as the fuzzer sees it: a client reaching it in process, with
    which headers, and real ids to put in place of generated path parameters."""

    client: Any  # schemathesis' ASGI client (a requests session)
    headers: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def call(self, case: OperationCase) -> None:
        if case.path_parameters:
            if "session_id" in case.path_parameters and "session_id" not in self.ids:
                self.ids["session_id"] = self._new_story()
            case.path_parameters = {
                name: self.ids.get(name, value) for name, value in case.path_parameters.items()
            }
        case.call_and_validate(
            base_url=BASE_URL, session=self.client, headers=self.headers, checks=CHECKS
        )

    def _new_story(self) -> str:
        story = self.client.post(
            "/api/v1/sessions", json={"kind": "story", "title": "Fuzzed"}, headers=self.headers
        )
        assert story.status_code == 201, story.text
        session_id: str = story.json()["id"]
        turn = self.client.post(
            f"/api/v1/sessions/{session_id}/turns", json={"text": "Look"}, headers=self.headers
        )
        assert turn.status_code == 201, turn.text
        return session_id

    def with_story(self) -> Target:
        """This target, with a fresh story of one turn as the session path parameter
        (an operation may delete or change the one before), made when an operation
        first names a session."""
        return replace(self, ids=dict(self.ids))


def _settings(tmp_path_factory: pytest.TempPathFactory, **overrides: Any) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("fuzz"),
        model="scripted",
        scripted_token_delay_ms=0,
        rate_limit="100000/minute",  # the limiters have tests of their own
        login_rate_limit="100000/minute",
        **overrides,
    )


# One app per variant, shared by every operation: starting one per operation would
# cost more than the fuzzing itself. Schemathesis runs an app's lifespan once and
# shuts it down when the process exits.


def _running(settings: Settings) -> Any:
    app: Any = create_app(settings, model=ScriptedModel())
    return asgi.get_client(app).__enter__()


@pytest.fixture(scope="module")
def single_user_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield Target(
        _running(_settings(tmp_path_factory)), ids={"workspace_id": "local", "user_id": "local"}
    )


@pytest.fixture(scope="module")
def key_holder_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """An instance that requires a login, and an administrator's API key for it."""
    settings = _settings(tmp_path_factory, require_login=True)

    async def make_key() -> str:
        engine = await Engine.open(settings, model=ScriptedModel())
        try:
            admin = await engine.accounts.create_user(
                "admin@example.org", password="correct horse battery", instance_admin=True
            )
            token, _ = await engine.credentials.create_api_key(admin["id"], "fuzz", ["admin"], None)
            return token
        finally:
            await engine.close()

    key = asyncio.run(make_key())
    yield Target(
        _running(settings),
        headers={"Authorization": f"Bearer {key}"},
        ids={"workspace_id": "local"},
    )


@pytest.fixture
def single_user(single_user_server: Target) -> Target:
    return single_user_server.with_story()


@pytest.fixture
def key_holder(key_holder_server: Target) -> Target:
    return key_holder_server.with_story()


# A second account would switch the shared single-user server to requiring logins for
# every operation after this one: creating users is fuzzed by the key holder instead.
@fuzz_only.exclude(name="POST /api/v1/users").parametrize()
@FUZZ_SETTINGS
def test_single_user_mode_conforms_to_the_schema(case: OperationCase, single_user: Target) -> None:
    single_user.call(case)


@schema.parametrize()
@FUZZ_SETTINGS
def test_api_key_holder_conforms_to_the_schema(case: OperationCase, key_holder: Target) -> None:
    key_holder.call(case)


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """Single-user mode on a PostgreSQL database of its own, where a NUL in any text
    would fail in the driver if the edge let one through."""
    need_postgres()
    name = f"fuzz_{uuid.uuid4().hex[:12]}"
    asyncio.run(_postgres(f"CREATE DATABASE {name}"))
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    key = base64.b64encode(os.urandom(32)).decode()
    settings = _settings(tmp_path_factory, database_url=url, encryption_keys=f"k1:{key}")
    yield Target(_running(settings), ids={"workspace_id": "local", "user_id": "local"})
    # The app keeps its pool until the process exits: FORCE closes it for the drop.
    asyncio.run(_postgres(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def on_postgres(postgres_server: Target) -> Target:
    return postgres_server.with_story()


@pytest.mark.postgres
@with_nul.exclude(name="POST /api/v1/users").parametrize()
@FUZZ_SETTINGS
def test_postgresql_with_nul_in_strings_conforms_to_the_schema(
    case: OperationCase, on_postgres: Target
) -> None:
    on_postgres.call(case)
