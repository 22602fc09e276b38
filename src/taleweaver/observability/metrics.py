"""The metrics, one registry per process (or, with several worker processes, the
shared directory prometheus-client reads when `PROMETHEUS_MULTIPROC_DIR` is set).

With several workers, a gauge is one of two sorts. Figures read from the database
or the configuration (crises, jobs, budgets) are set by whichever worker answers
the scrape just before it answers: "mostrecent" shows that fresh value, never
another worker's stale one. Figures of a worker's own state (connections,
sessions, pool, breakers) are "live*": each worker keeps its own current (see
`engine.gauges.worker_gauges`) and is taken out of the sum when it stops.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from taleweaver.config import TelemetrySettings

# Seconds: from a fast in-process stage to a slow model reply.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass(frozen=True, slots=True)
class Metrics:
    http_requests: Histogram
    turn_stages: Histogram
    turns: Counter
    time_to_first_token: Histogram
    in_flight: Gauge
    inter_token: Histogram
    safety_verdicts: Counter
    crisis_escalations: Counter
    crises_unacknowledged: Gauge
    oldest_unacknowledged_crisis: Gauge
    reply_tokens: Counter
    model_calls: Counter
    model_tokens: Counter
    model_cost: Counter
    model_retries: Counter
    model_fallbacks: Counter
    breaker_open: Gauge
    live_connections: Gauge
    active_sessions: Gauge
    jobs_queued: Gauge
    oldest_job: Gauge
    budget_limit: Gauge
    db_queries: Histogram
    db_pool_in_use: Gauge


def _build() -> Metrics:
    return Metrics(
        http_requests=Histogram(
            "taleweaver_http_request_duration_seconds",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
        ),
        turn_stages=Histogram(
            "taleweaver_turn_stage_duration_seconds",
            "Time in each pipeline stage (understand, safety_in, recall, narrate, "
            "safety_out, extract, continuity, commit).",
            ["stage", "kind"],
            buckets=LATENCY_BUCKETS,
        ),
        turns=Counter(
            "taleweaver_turns_total",
            "Turns by session kind and outcome (completed, cancelled, failed).",
            ["kind", "outcome"],
        ),
        time_to_first_token=Histogram(
            "taleweaver_turn_time_to_first_token_seconds",
            "From a turn's start to its first streamed token.",
            ["kind"],
            buckets=LATENCY_BUCKETS,
        ),
        in_flight=Gauge(
            "taleweaver_turns_in_flight",
            "Turns generating or committing now.",
            multiprocess_mode="livesum",
        ),
        inter_token=Histogram(
            "taleweaver_turn_inter_token_seconds",
            "Gaps between a reply's streamed tokens.",
            ["kind"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        ),
        safety_verdicts=Counter(
            "taleweaver_safety_verdicts_total",
            "Safety verdicts that were not 'safe', by direction, level and category.",
            ["direction", "level", "category"],
        ),
        crisis_escalations=Counter(
            "taleweaver_crisis_escalations_total",
            "Turns the crisis protocol took over, by crisis level.",
            ["level"],
        ),
        crises_unacknowledged=Gauge(
            "taleweaver_crises_unacknowledged",
            "Crisis flags still open (no one has resolved them).",
            multiprocess_mode="mostrecent",
        ),
        oldest_unacknowledged_crisis=Gauge(
            "taleweaver_crisis_oldest_unacknowledged_seconds",
            "Age of the oldest open crisis flag (0 when there is none).",
            multiprocess_mode="mostrecent",
        ),
        reply_tokens=Counter(
            "taleweaver_reply_tokens_total",
            "Streamed reply tokens by the model that wrote them.",
            ["model"],
        ),
        model_calls=Counter(
            "taleweaver_model_calls_total",
            "Calls to a provider by model, task and outcome (ok, failed, cancelled).",
            ["provider", "model", "task", "outcome"],
        ),
        model_tokens=Counter(
            "taleweaver_model_tokens_total",
            "Tokens by provider, model, task and direction (input, output).",
            ["provider", "model", "task", "direction"],
        ),
        model_cost=Counter(
            "taleweaver_model_cost_usd_total",
            "Spending in US dollars by provider, model and task.",
            ["provider", "model", "task"],
        ),
        model_retries=Counter(
            "taleweaver_model_retries_total",
            "Calls tried again on the same provider after a retryable failure.",
            ["provider", "task"],
        ),
        model_fallbacks=Counter(
            "taleweaver_model_fallbacks_total",
            "Times a task moved on from a provider to the next in its chain.",
            ["provider", "task"],
        ),
        breaker_open=Gauge(
            "taleweaver_model_breaker_open",
            "1 while a provider's circuit breaker is open (calls are not sent).",
            ["provider"],
            multiprocess_mode="livemax",
        ),
        live_connections=Gauge(
            "taleweaver_live_connections",
            "Open live-channel WebSockets.",
            multiprocess_mode="livesum",
        ),
        active_sessions=Gauge(
            "taleweaver_active_sessions",
            "Sessions with a live connection or a turn in flight on this server.",
            multiprocess_mode="livesum",
        ),
        jobs_queued=Gauge(
            "taleweaver_jobs_queued",
            "Background jobs waiting, by queue.",
            ["queue"],
            multiprocess_mode="mostrecent",
        ),
        oldest_job=Gauge(
            "taleweaver_job_oldest_age_seconds",
            "Age of the oldest waiting job, by queue (0 when none waits).",
            ["queue"],
            multiprocess_mode="mostrecent",
        ),
        budget_limit=Gauge(
            "taleweaver_budget_limit_usd",
            "Configured spending limit in US dollars, by scope: workspace (each "
            "workspace, per calendar month) or session (over its life); absent if unset.",
            ["scope"],
            multiprocess_mode="mostrecent",
        ),
        db_queries=Histogram(
            "taleweaver_db_query_duration_seconds",
            "Database statements by kind (select, insert, update, delete, other).",
            ["operation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        ),
        db_pool_in_use=Gauge(
            "taleweaver_db_pool_connections_in_use",
            "Database connections checked out of the pool.",
            multiprocess_mode="livesum",
        ),
    )


METRICS = _build()


@dataclass(slots=True)
class _Switch:
    on: bool = True


SWITCH = _Switch()


def enable(on: bool) -> None:
    """Count (the default) or not: off, every observer returns at once."""
    SWITCH.on = on


_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "gauge": ("",)}


def _exported() -> frozenset[str]:
    """Every series name the server exports, as a query names it."""
    names: set[str] = set()
    for field in Metrics.__dataclass_fields__:
        for family in getattr(METRICS, field).describe():
            names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return frozenset(names)


EXPORTED = _exported()


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    if not SWITCH.on:
        return
    METRICS.http_requests.labels(route, method, str(status)).observe(seconds)


def observe_stage(stage: str, kind: str, seconds: float) -> None:
    if not SWITCH.on:
        return
    METRICS.turn_stages.labels(stage, kind).observe(seconds)


def observe_ttft(kind: str, seconds: float) -> None:
    if not SWITCH.on:
        return
    METRICS.time_to_first_token.labels(kind).observe(seconds)


def observe_inter_token(kind: str, seconds: float) -> None:
    if not SWITCH.on:
        return
    METRICS.inter_token.labels(kind).observe(seconds)


def observe_turn(kind: str, outcome: str, *, model: str = "", tokens: int = 0) -> None:
    if not SWITCH.on:
        return
    METRICS.turns.labels(kind, outcome).inc()
    if tokens and model:
        METRICS.reply_tokens.labels(model).inc(tokens)


def observe_safety(
    direction: str, level: str, categories: tuple[str, ...], crisis_level: str | None
) -> None:
    """A verdict that was not safe (categories come from the detector's fixed list)."""
    if not SWITCH.on:
        return
    for category in categories or ("none",):
        METRICS.safety_verdicts.labels(direction, level, category).inc()
    if crisis_level is not None:
        METRICS.crisis_escalations.labels(crisis_level).inc()


def observe_model_call(
    provider: str,
    model: str,
    task: str,
    outcome: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cost_usd: float,
) -> None:
    """One provider call as the router accounted it."""
    if not SWITCH.on:
        return
    METRICS.model_calls.labels(provider, model, task, outcome).inc()
    if input_tokens:
        METRICS.model_tokens.labels(provider, model, task, "input").inc(input_tokens)
    if output_tokens:
        METRICS.model_tokens.labels(provider, model, task, "output").inc(output_tokens)
    if cost_usd > 0:
        METRICS.model_cost.labels(provider, model, task).inc(cost_usd)


def observe_retry(provider: str, task: str) -> None:
    if not SWITCH.on:
        return
    METRICS.model_retries.labels(provider, task).inc()


def observe_fallback(provider: str, task: str) -> None:
    if not SWITCH.on:
        return
    METRICS.model_fallbacks.labels(provider, task).inc()


_SQL_KINDS = frozenset({"select", "insert", "update", "delete"})


def observe_query(statement: str, seconds: float) -> None:
    if not SWITCH.on:
        return
    word = statement.lstrip()[:6].lower()
    METRICS.db_queries.labels(word if word in _SQL_KINDS else "other").observe(seconds)


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    """This process's own state, which no other worker can know."""

    breakers_open: tuple[tuple[str, bool], ...] = ()  # (provider, open)
    live_connections: int = 0
    active_sessions: int = 0
    pool_in_use: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the server reads at each scrape: the database and configuration, which
    every worker sees alike, and the answering worker's own figures."""

    crises_open: int = 0
    oldest_crisis_s: float = 0.0
    jobs: tuple[tuple[str, int, float], ...] = ()  # (queue, waiting, oldest age)
    budgets: tuple[tuple[str, float], ...] = ()  # (scope, limit in USD), configured ones
    process: ProcessFigures = ProcessFigures()


def record_snapshot(snapshot: Snapshot) -> None:
    if not SWITCH.on:
        return
    METRICS.crises_unacknowledged.set(snapshot.crises_open)
    METRICS.oldest_unacknowledged_crisis.set(snapshot.oldest_crisis_s)
    for queue, waiting, oldest in snapshot.jobs:
        METRICS.jobs_queued.labels(queue).set(waiting)
        METRICS.oldest_job.labels(queue).set(oldest)
    for scope, limit in snapshot.budgets:
        METRICS.budget_limit.labels(scope).set(limit)
    record_process(snapshot.process)


def record_process(figures: ProcessFigures) -> None:
    if not SWITCH.on:
        return
    for provider, is_open in figures.breakers_open:
        METRICS.breaker_open.labels(provider).set(1 if is_open else 0)
    METRICS.live_connections.set(figures.live_connections)
    METRICS.active_sessions.set(figures.active_sessions)
    METRICS.db_pool_in_use.set(figures.pool_in_use)


@contextmanager
def turns_in_flight() -> Iterator[None]:
    if not SWITCH.on:
        yield
        return
    METRICS.in_flight.inc()
    try:
        yield
    finally:
        METRICS.in_flight.dec()


def several_workers() -> bool:
    """Whether worker processes share one exposition (`PROMETHEUS_MULTIPROC_DIR`)."""
    return bool(TelemetrySettings.read().prometheus_multiproc_dir)


def retire_process() -> None:
    """Take this worker's live gauges out of the shared exposition (on a clean stop);
    its counters stay, as counts of what it did."""
    if several_workers():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def exposition() -> tuple[bytes, str]:
    """The text exposition and its content type; with several worker processes
    (`PROMETHEUS_MULTIPROC_DIR` set), the sum over all of them."""
    if several_workers():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
