"""What an operator scrapes and ships: `/metrics` after real turns over loopback HTTP,
the alert rules (checked by promtool) and the Grafana dashboards, whose every query
must name a metric the server exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from taleweaver.config import Settings
from taleweaver.llm import ScriptedModel
from taleweaver.llm.config import (
    BreakerSettings,
    BudgetSettings,
    ModelSettings,
    Price,
    ProviderSettings,
    RetrySettings,
    RouteSettings,
)
from taleweaver.observability import EXPORTED
from tests.conftest import LoopbackServer
from tests.loopback_models import Reply, serving
from tests.test_api import create_session, say, stream_turn

Serve = Callable[..., httpx.Client]
ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
METRIC = re.compile(r"\btaleweaver_[a-z0-9_]+")
SECRET_WORDS = "lanternbearer"  # a word only the player typed
STAGES = (
    *("understand", "safety_in", "recall", "narrate", "safety_out"),
    *("extract", "continuity", "commit"),
)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client) -> tuple[Samples, str]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, response.text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def settles(client: httpx.Client, name: str, expected: float) -> None:
    """Scrape until the gauge `name` reads `expected` (what the server does in the
    background after answering has finished)."""
    deadline = time.monotonic() + 20
    while (found := value(scrape(client)[0], name)) != expected:
        assert time.monotonic() < deadline, f"{name} stays at {found}"
        time.sleep(0.05)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and wanted <= got)


def test_a_turn_moves_the_turn_stage_token_and_request_metrics(serve: Serve) -> None:
    client = serve(model=ScriptedModel(["The lantern gutters. You see a door."]))
    session = create_session(client)["id"]
    before, _ = scrape(client)
    say(client, session, f"I call out to the {SECRET_WORDS}")
    stream_turn(client, session, {"text": "I open the door"})
    after, text = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("taleweaver_turns_total", kind="story", outcome="completed") == 2
    for stage in STAGES:
        assert grew("taleweaver_turn_stage_duration_seconds_count", stage=stage, kind="story") == 2
    assert grew("taleweaver_turn_time_to_first_token_seconds_count", kind="story") == 2
    assert grew("taleweaver_turn_inter_token_seconds_count", kind="story") > 0
    assert grew("taleweaver_reply_tokens_total", model="scripted") > 0
    assert grew("taleweaver_model_calls_total", task="narrate", outcome="ok") == 2
    assert grew("taleweaver_model_tokens_total", task="narrate", direction="output") > 0
    assert value(after, "taleweaver_turns_in_flight") == 0
    # Every database connection the turns took goes back to the pool (work after a
    # turn's reply, such as indexing, may still hold one for a moment).
    assert ("taleweaver_db_pool_connections_in_use", frozenset()) in after
    settles(client, "taleweaver_db_pool_connections_in_use", 0)
    route = "/api/v1/sessions/{session_id}/turns"
    assert grew("taleweaver_http_request_duration_seconds_count", route=route, method="POST") == 2
    assert grew("taleweaver_db_query_duration_seconds_count", operation="insert") >= 2
    # Labels carry templates and fixed names: never the session id or what was said.
    assert session not in text and SECRET_WORDS not in text


def _routed(settings: Settings, overloaded_url: str) -> Settings:
    """Narration first on a provider at `overloaded_url` (tried twice a call, its
    breaker open after two failures), then on a priced scripted model."""
    return settings.model_copy(
        update=dict(
            model="configured",
            providers={
                "doorway": ProviderSettings(
                    kind="openai",
                    base_url=overloaded_url,
                    retry=RetrySettings(attempts=2, base_delay=0, max_delay=0, jitter=0),
                    breaker=BreakerSettings(failures=2, cooldown=600),
                ),
                "local": ProviderSettings(kind="scripted"),
            },
            models={
                "far": ModelSettings(provider="doorway", model="far-away"),
                "teller": ModelSettings(provider="local", price=Price(input=10, output=20)),
            },
            routes=RouteSettings(default=["teller"], narrate=["far", "teller"]),
        )
    )


def test_a_routed_turn_counts_retries_the_fallback_the_open_breaker_and_the_cost(
    settings: Settings,
) -> None:
    with serving(1) as (overloaded,):
        overloaded.then(Reply(status=503))
        routed = _routed(settings, overloaded.url("openai"))
        with (
            LoopbackServer(routed, None) as server,
            httpx.Client(base_url=server.base_url) as client,
        ):
            session = create_session(client)["id"]
            before, _ = scrape(client)
            say(client, session, "I knock twice")
            say(client, session, "I knock again")
            after, text = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    narrate = {"task": "narrate"}
    assert grew("taleweaver_model_calls_total", provider="doorway", outcome="failed") == 2
    assert grew("taleweaver_model_retries_total", provider="doorway", **narrate) == 1
    # The second turn finds the breaker open: it skips the provider, no fallback counted.
    assert grew("taleweaver_model_fallbacks_total", provider="doorway", **narrate) == 1
    assert value(after, "taleweaver_model_breaker_open", provider="doorway") == 1
    assert value(after, "taleweaver_model_breaker_open", provider="local") == 0
    assert grew("taleweaver_model_calls_total", provider="local", outcome="ok", **narrate) == 2
    spent = grew("taleweaver_model_cost_usd_total", provider="local", **narrate)
    tokens_in = grew(
        "taleweaver_model_tokens_total", provider="local", direction="input", **narrate
    )
    tokens_out = grew(
        "taleweaver_model_tokens_total", provider="local", direction="output", **narrate
    )
    assert tokens_in > 0 and tokens_out > 0
    assert spent == pytest.approx((tokens_in * 10 + tokens_out * 20) / 1_000_000)
    assert grew("taleweaver_model_cost_usd_total", provider="doorway") == 0
    assert session not in text


def test_an_open_live_connection_counts_as_a_connection_and_an_active_session(
    serve: Serve,
) -> None:
    client = serve(model=ScriptedModel(["A bell rings."]))
    session = create_session(client)["id"]
    url = client.base_url.copy_with(scheme="ws", path=f"/api/v1/sessions/{session}/live")
    with connect(str(url), open_timeout=20) as ws:
        assert json.loads(ws.recv(timeout=20))["type"] == "hello"  # watched from here on
        watched, text = scrape(client)
        assert value(watched, "taleweaver_live_connections") == 1
        assert value(watched, "taleweaver_active_sessions") == 1
        assert session not in text
    settles(client, "taleweaver_live_connections", 0)  # once the server has seen the close
    assert value(scrape(client)[0], "taleweaver_active_sessions") == 0


def test_the_scrape_reads_open_crises_and_waiting_jobs(serve: Serve) -> None:
    client = serve(model=ScriptedModel(["You sit by the window."]))
    session = create_session(client)["id"]
    say(client, session, "I want to kill myself tonight")
    samples, _ = scrape(client)
    assert value(samples, "taleweaver_crises_unacknowledged") >= 1
    assert value(samples, "taleweaver_crisis_oldest_unacknowledged_seconds") >= 0
    assert total(samples, "taleweaver_crisis_escalations_total") >= 1
    assert total(samples, "taleweaver_safety_verdicts_total", direction="input") >= 1
    assert ("taleweaver_jobs_queued", frozenset({("queue", "safety_webhooks")})) in samples


def test_a_failed_model_call_is_counted_by_outcome(serve: Serve) -> None:
    client = serve(model=ScriptedModel(["Half a sentence"], fail_after=1))
    session = create_session(client)["id"]
    before, _ = scrape(client)
    stream_turn(client, session, {"text": "I enter"})
    after, _ = scrape(client)
    failed = total(after, "taleweaver_turns_total", outcome="failed") - total(
        before, "taleweaver_turns_total", outcome="failed"
    )
    assert failed == 1


def test_metrics_need_no_credentials_and_are_not_rate_limited(serve: Serve) -> None:
    base = serve(require_login=True).base_url
    with httpx.Client(base_url=base) as stranger:  # no cookie, no key
        assert stranger.get("/api/v1/sessions").status_code == 401
        for _ in range(3):
            assert stranger.get("/metrics").status_code == 200


# --- what ships in deploy/ ---------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_rule_names_exported_metrics_and_has_a_runbook() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text().lower()
    rules = _rules()
    wanted = {"TurnSuccessLow", "TimeToFirstTokenSlow", "ProviderErrorsHigh", "BreakerOpen"}
    wanted |= {"BudgetBurnFast", "CrisisUnacknowledged", "JobBacklog"}
    assert {f"Taleweaver{w}" for w in wanted} <= {r["alert"] for r in rules}
    for rule in rules:
        names = set(METRIC.findall(rule["expr"]))
        assert names <= EXPORTED, f"{rule['alert']} names {sorted(names - EXPORTED)}"
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert f"## {anchor}" in operations.replace("### ", "## "), anchor


@pytest.mark.skipif(
    shutil.which("promtool") is None and not os.environ.get("CI"),
    reason="promtool is not installed (`.ci/run` installs Debian's prometheus package)",
)
def test_the_alert_rules_pass_promtool() -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(_rules())} rules found" in checked.stdout


def _budget_case(usd_a_minute: float, budget: float | None, fires: bool) -> dict[str, Any]:
    series = [
        {
            "series": 'taleweaver_model_cost_usd_total{provider="cloud",model="m",task="narrate"}',
            "values": f"0+{usd_a_minute}x180",
        }
    ]
    if budget is not None:
        series.append(
            {"series": 'taleweaver_budget_limit_usd{scope="workspace"}', "values": f"{budget}x180"}
        )
    a_day = usd_a_minute * 60 * 24
    expected = {
        "exp_labels": {"severity": "ticket"},
        "exp_annotations": {
            "summary": "Model spending is on course to pass the monthly budget",
            "description": f"At the last hour's rate: {a_day:.2f} USD a day.",
            "runbook": "docs/operations.md#taleweaverbudgetburnfast",
        },
    }
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            {
                "eval_time": "2h",
                "alertname": "TaleweaverBudgetBurnFast",
                "exp_alerts": [expected] if fires else [],
            }
        ],
    }


@pytest.mark.skipif(
    shutil.which("promtool") is None and not os.environ.get("CI"),
    reason="promtool is not installed (`.ci/run` installs Debian's prometheus package)",
)
def test_the_budget_alert_weighs_spending_against_the_configured_budget(tmp_path: Path) -> None:
    """14.4 USD a day passes a 300 USD monthly budget (10 a day), not a 600 USD one;
    with no budget configured, the shipped 50 USD a day stands in."""
    cases = [
        _budget_case(0.01, 300, fires=True),
        _budget_case(0.01, 600, fires=False),
        _budget_case(0.04, None, fires=True),
        _budget_case(0.02, None, fires=False),
    ]
    tests = tmp_path / "budget-tests.yml"
    tests.write_text(yaml.safe_dump({"rule_files": [str(ALERTS)], "tests": cases}))
    checked = subprocess.run(
        ["promtool", "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_configured_budgets_are_exported(serve: Serve) -> None:
    client = serve(budgets=BudgetSettings(workspace_usd=300, session_usd=2.5))
    samples, _ = scrape(client)
    assert value(samples, "taleweaver_budget_limit_usd", scope="workspace") == 300
    assert value(samples, "taleweaver_budget_limit_usd", scope="session") == 2.5


def test_dashboards_cover_health_turns_cost_and_safety() -> None:
    assert {d.stem for d in DASHBOARDS} == {"service-health", "turns-and-models", "cost", "safety"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_dashboard_query_names_exported_metrics(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"] and board["title"].startswith("Taleweaver")
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    assert exprs
    for expr in exprs:
        names = set(METRIC.findall(expr))
        assert names, expr
        assert names <= EXPORTED, f"{path.name}: {sorted(names - EXPORTED)}"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


def test_several_worker_processes_add_up_in_one_scrape(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR (several uvicorn workers), one scrape answers for
    all of them: two workers that each count a turn read as two."""
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = (
        "from taleweaver.observability import observe_turn, turns_in_flight\n"
        "observe_turn('story', 'completed', model='m', tokens=5)\n"
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, timeout=60)
    scrape = (
        "from taleweaver.observability import exposition\n"
        "import sys; sys.stdout.write(exposition()[0].decode())\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", scrape], env=env, check=True, timeout=60, capture_output=True
    ).stdout.decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(shown)
        for s in family.samples
    }
    labels = frozenset({("kind", "story"), ("outcome", "completed")})
    assert samples[("taleweaver_turns_total", labels)] == 2
    assert samples[("taleweaver_reply_tokens_total", frozenset({("model", "m")}))] == 10


def _worker(env: dict[str, str], code: str) -> str:
    """Run `code` as a worker process of its own; what it printed."""
    ran = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, timeout=60, capture_output=True
    )
    return ran.stdout.decode()


def _samples(exposition: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


_RECORD = """
from taleweaver.observability import ProcessFigures, Snapshot, record_snapshot, retire_process
record_snapshot(Snapshot(
    crises_open={crises}, oldest_crisis_s={age}, jobs=(("safety_webhooks", {crises}, {age}),),
    process=ProcessFigures(
        breakers_open=(("cloud", {breaker}),), live_connections={live}, active_sessions={live}
    ),
))
"""


def test_several_workers_show_the_database_as_the_scraping_worker_read_it(
    tmp_path: Path,
) -> None:
    """Worker A scraped while a crisis was open; it is resolved, and worker B answers
    the next scrape: the scrape says none is open, not A's stale one. Each worker's own
    connections add up, and a worker that stopped counts no more."""
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    _worker(env, _RECORD.format(crises=1, age=1200.0, breaker=False, live=2))
    stopped = _RECORD.format(crises=1, age=1300.0, breaker=True, live=4)
    _worker(env, stopped + "retire_process()\n")  # a clean shutdown
    answering = _RECORD.format(crises=0, age=0.0, breaker=False, live=3)
    shown = _samples(
        _worker(
            env,
            answering + "from taleweaver.observability import exposition\n"
            "import sys; sys.stdout.write(exposition()[0].decode())\n",
        )
    )
    assert value(shown, "taleweaver_crises_unacknowledged") == 0
    assert value(shown, "taleweaver_crisis_oldest_unacknowledged_seconds") == 0
    assert value(shown, "taleweaver_jobs_queued", queue="safety_webhooks") == 0
    assert value(shown, "taleweaver_job_oldest_age_seconds", queue="safety_webhooks") == 0
    assert value(shown, "taleweaver_live_connections") == 2 + 3
    assert value(shown, "taleweaver_active_sessions") == 2 + 3
    assert value(shown, "taleweaver_model_breaker_open", provider="cloud") == 0


def test_a_worker_keeps_its_own_gauges_current_and_retracts_them_when_it_stops(
    tmp_path: Path, settings: Settings
) -> None:
    """Between scrapes that other workers answer, a worker refreshes its own figures
    (here: a database connection it holds); once it stops they leave the sum."""
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    (tmp_path / "metrics").mkdir()
    worker = f"""
import asyncio
from taleweaver.config import Settings
from taleweaver.engine import Engine
from taleweaver.engine.gauges import worker_gauges

async def main() -> None:
    engine = await Engine.open(Settings(data_dir={str(settings.data_dir)!r}, model="scripted"))
    try:
        async with worker_gauges(engine, every_s=0.02):
            async with engine.db.read():
                await asyncio.sleep(0.3)
                print("holding", flush=True)
                input()  # until the test has scraped
    finally:
        await engine.close()

asyncio.run(main())
"""
    with subprocess.Popen(
        [sys.executable, "-c", worker],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None and process.stdin is not None
            assert process.stdout.readline().strip() == "holding"
            held = _samples(_scrape_directory(tmp_path / "metrics"))
            assert value(held, "taleweaver_db_pool_connections_in_use") >= 1
            process.stdin.write("\n")
            process.stdin.flush()
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                process.kill()
    after = _samples(_scrape_directory(tmp_path / "metrics"))
    assert value(after, "taleweaver_db_pool_connections_in_use") == 0


def _scrape_directory(path: Path) -> str:
    """What a worker with `PROMETHEUS_MULTIPROC_DIR=path` would answer."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    return generate_latest(registry).decode()


@pytest.mark.skipif(
    shutil.which("prometheus") is None and not os.environ.get("CI"),
    reason="prometheus is not installed (`.ci/run` installs Debian's prometheus package)",
)
def test_a_real_prometheus_scrapes_the_server_and_runs_every_rule_and_panel(
    serve: Serve, tmp_path: Path
) -> None:
    client = serve(model=ScriptedModel(["The tide turns. You see a boat."]))
    session = create_session(client)["id"]
    say(client, session, "I wave to the boat")
    target = client.base_url.netloc.decode()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{ALERTS}]\n"
        f"scrape_configs: [{{job_name: taleweaver, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=5)
    try:

        def query(expr: str) -> dict[str, Any]:
            response = api.get("/query", params={"query": expr})
            response.raise_for_status()  # 503 in plain text while its storage opens
            answer: dict[str, Any] = response.json()
            return answer

        deadline = time.monotonic() + 30
        while True:  # until the first scrape with the turn in it has landed
            try:
                found = query("sum(taleweaver_turns_total)")["data"]["result"]
                if found and float(found[0]["value"][1]) >= 1:
                    break
            except httpx.HTTPError:  # not listening yet, or not ready to answer
                pass
            assert time.monotonic() < deadline, "Prometheus never scraped the turn"
            time.sleep(0.3)
        while not all(  # every rule evaluated at least once, none broken
            rule.get("lastEvaluation", "").startswith("2")
            and not rule["lastEvaluation"].startswith("0001")
            for group in api.get("/rules").json()["data"]["groups"]
            for rule in group["rules"]
        ):
            assert time.monotonic() < deadline, "the rules were never evaluated"
            time.sleep(0.3)
        rules = [r for g in api.get("/rules").json()["data"]["groups"] for r in g["rules"]]
        assert len(rules) == len(_rules())
        assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
        for path in DASHBOARDS:
            for panel in json.loads(path.read_text())["panels"]:
                for expr in (t["expr"] for t in panel["targets"]):
                    assert query(expr)["status"] == "success", (path.name, expr)
    finally:
        api.close()
        prometheus.terminate()
        prometheus.wait(timeout=10)
