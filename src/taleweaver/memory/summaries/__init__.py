"""Rolling summaries of long sessions: layered summaries written in the background,
handed to the narrator through recall so that old turns are never forgotten."""

from taleweaver.memory.summaries.service import Summaries, Summarizer, SummaryConfig
from taleweaver.memory.summaries.source import SummarySource
from taleweaver.memory.summaries.store import Draft, SummaryStore, summary_aad

__all__ = [
    "Draft",
    "Summaries",
    "Summarizer",
    "SummaryConfig",
    "SummarySource",
    "SummaryStore",
    "summary_aad",
]
