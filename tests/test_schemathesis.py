"""The whole API fuzzed from its own OpenAPI schema with schemathesis, against the real
app in process (its whole ASGI stack, lifespan included; the HTTP server itself is
tested in tests/test_api.py and by the CLI's `serve`): no request may cause a server
error, and every answer must be one the schema documents, in status, content type,
headers and body, and nothing may be logged as an error. Once in single-user mode,
over a world with a played session, and once as the holder of an API key on an
instance that requires a login; strings hold NUL characters, and every JSON body
once more with a lone surrogate in it. Deterministic and bounded: a fixed seed, five
examples per operation (each operation's own tests cover its behaviour; this finds
what no one thought to write)."""

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
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, HookContext
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
from tests.test_hostile_input import server_errors

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
    fuzz with and without the coverage phase, and with two examples an operation."""
    document = create_app(Settings(model="scripted")).openapi()

    def schema(coverage: bool, examples: int = 5) -> schemathesis.BaseSchema:
        phases = {"stateful": {"enabled": False}, "coverage": {"enabled": coverage}}
        generation: dict[str, Any] = {
            "max-examples": examples,
            "deterministic": True,
            "database": "none",
            # The default, said outright: SQLite stores a NUL that PostgreSQL refuses,
            # so each database must meet it at the edge.
            "allow-x00": True,
        }
        config = schemathesis.Config.from_dict(
            {"seed": 20251124, "generation": generation, "phases": phases}
        )
        return schemathesis.openapi.from_dict(document, config=config)

    return schema(coverage=True), schema(coverage=False), schema(coverage=False, examples=2)


# The coverage phase sends every case the schema defines (each missing, wrong-typed
# or out-of-range value: ~50 requests an operation); it runs once, as the key holder,
# whose instance has every operation. Validation answers the same in single-user
# mode, which is fuzzed with five examples an operation; lone surrogates with two.
schema, fuzz_only, fuzz_few = _schemas()


def _is_json_body(case: OperationCase) -> bool:
    return "json" in (case.media_type or "") and isinstance(case.body, dict | list)


def _strings_in(value: Any) -> int:
    """How many strings `value` holds, keys included."""
    if isinstance(value, str):
        return 1
    if isinstance(value, dict):
        return sum(
            1 + _strings_in(v) if isinstance(k, str) else _strings_in(v) for k, v in value.items()
        )
    if isinstance(value, list):
        return sum(_strings_in(v) for v in value)
    return 0


def _surrogate_at(value: Any, index: int, surrogate: str) -> tuple[Any, int]:
    """`value` with `surrogate` put in the middle of its `index`-th string (keys and
    values, depth first), and how many strings it passed."""
    if isinstance(value, str):
        middle = len(value) // 2
        return (value[:middle] + surrogate + value[middle:] if index == 0 else value), 1
    if isinstance(value, dict):
        result, seen = {}, 0
        for key, item in value.items():
            if isinstance(key, str):
                key, n = _surrogate_at(key, index - seen, surrogate)
                seen += n
            item, n = _surrogate_at(item, index - seen, surrogate)
            result[key], seen = item, seen + n
        return result, seen
    if isinstance(value, list):
        items, seen = [], 0
        for item in value:
            item, n = _surrogate_at(item, index - seen, surrogate)
            items.append(item)
            seen += n
        return items, seen
    return value, 0


def _with_surrogate(case: OperationCase, index: int, surrogate: str) -> OperationCase:
    """A copy of `case` whose body holds `surrogate`. A new case, not an edit: an
    edited body is validated again by schemathesis, whose validator cannot read a
    lone surrogate; this one makes no claim to be valid (no generation metadata)."""
    body = case.body
    if _strings_in(body):
        body = _surrogate_at(body, index, surrogate)[0]
    elif isinstance(body, dict):
        body = {**body, surrogate: 1}
    elif isinstance(body, list):
        body = [*body, surrogate]
    return Case(
        case.operation,
        case.method,
        case.path,
        path_parameters=case.path_parameters,
        headers=case.headers,
        cookies=case.cookies,
        query=case.query,
        body=body,
        media_type=case.media_type,
        multipart_content_types=case.multipart_content_types,
    )


def flatmap_case(_: HookContext, case: OperationCase) -> st.SearchStrategy[OperationCase]:
    """A generated JSON body with a lone UTF-16 surrogate in one of its strings (or a
    key that is one), as a client escapes it (`\\ud800`): schemathesis draws none,
    since a real string cannot be encoded with one."""
    if not _is_json_body(case):
        return st.just(case)
    places = max(_strings_in(case.body), 1)
    surrogates = st.integers(0xD800, 0xDFFF).map(chr)
    return st.builds(_with_surrogate, st.just(case), st.integers(0, places - 1), surrogates)


# Where the in-process client sends requests.
BASE_URL = f"http://{asgi.HOST}"


@dataclass
class Target:
    """A running app as the fuzzer sees it: a client reaching it in process, with
    which headers, and real ids to put in place of generated path parameters."""

    client: Any  # schemathesis' ASGI client (a requests session)
    headers: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def call(self, case: OperationCase, caplog: pytest.LogCaptureFixture) -> Any:
        """The answer to `case`, once it passed every check and logged no error."""
        if case.path_parameters:
            if "session_id" in case.path_parameters and "session_id" not in self.ids:
                self.ids["session_id"] = self._new_story()
            case.path_parameters = {
                name: self.ids.get(name, value) for name, value in case.path_parameters.items()
            }
        caplog.clear()
        response = case.call_and_validate(
            base_url=BASE_URL, session=self.client, headers=self.headers, checks=CHECKS
        )
        logged = server_errors(caplog.records)
        assert not logged, f"the server logged {logged}"
        return response

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
def test_single_user_mode_conforms_to_the_schema(
    case: OperationCase, single_user: Target, caplog: pytest.LogCaptureFixture
) -> None:
    single_user.call(case, caplog)


# Every operation that takes a body, twice each: a surrogate is refused before any
# route reads the body, so more examples would only repeat that.
with_bodies = fuzz_few.include(method=["POST", "PUT", "PATCH"]).exclude(name="POST /api/v1/users")


def _refused(case: OperationCase, response: Any) -> None:
    if _is_json_body(case):
        assert response.status_code == 422, response.text


@fuzz_few.hooks.apply(flatmap_case)
@with_bodies.parametrize()
@FUZZ_SETTINGS
def test_a_lone_surrogate_in_any_json_body_is_refused_on_sqlite(
    case: OperationCase, single_user: Target, caplog: pytest.LogCaptureFixture
) -> None:
    _refused(case, single_user.call(case, caplog))


@schema.parametrize()
@FUZZ_SETTINGS
def test_api_key_holder_conforms_to_the_schema(
    case: OperationCase, key_holder: Target, caplog: pytest.LogCaptureFixture
) -> None:
    key_holder.call(case, caplog)


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
@fuzz_only.exclude(name="POST /api/v1/users").parametrize()
@FUZZ_SETTINGS
def test_postgresql_with_nul_in_strings_conforms_to_the_schema(
    case: OperationCase, on_postgres: Target, caplog: pytest.LogCaptureFixture
) -> None:
    on_postgres.call(case, caplog)


@pytest.mark.postgres
@fuzz_few.hooks.apply(flatmap_case)
@with_bodies.parametrize()
@FUZZ_SETTINGS
def test_a_lone_surrogate_in_any_json_body_is_refused_on_postgresql(
    case: OperationCase, on_postgres: Target, caplog: pytest.LogCaptureFixture
) -> None:
    _refused(case, on_postgres.call(case, caplog))
