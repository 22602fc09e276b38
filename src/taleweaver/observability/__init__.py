"""What an operator graphs and alerts on: Prometheus metrics, named `taleweaver_*`.

Labels carry only bounded, non-personal values (route templates, stage names,
session kinds, levels, model names from configuration): never user content, ids
of people or session ids.
"""

from taleweaver.observability.metrics import (
    EXPORTED,
    METRICS,
    ProcessFigures,
    Snapshot,
    enable,
    exposition,
    observe_fallback,
    observe_inter_token,
    observe_model_call,
    observe_query,
    observe_request,
    observe_retry,
    observe_safety,
    observe_stage,
    observe_ttft,
    observe_turn,
    record_process,
    record_snapshot,
    retire_process,
    several_workers,
    turns_in_flight,
)

__all__ = [
    "EXPORTED",
    "METRICS",
    "ProcessFigures",
    "Snapshot",
    "enable",
    "exposition",
    "observe_fallback",
    "observe_inter_token",
    "observe_model_call",
    "observe_query",
    "observe_request",
    "observe_retry",
    "observe_safety",
    "observe_stage",
    "observe_ttft",
    "observe_turn",
    "record_process",
    "record_snapshot",
    "retire_process",
    "several_workers",
    "turns_in_flight",
]
