"""World memory seams: what is extracted from replies and checked against canon."""

from taleweaver.memory.context import ContextPiece, ContextSource, Placement, RecallQuery
from taleweaver.memory.seams import (
    ContinuityChecker,
    Extractor,
    NoContinuityCheck,
    NoExtraction,
    ReplyUnderReview,
)

__all__ = [
    "ContextPiece",
    "ContextSource",
    "ContinuityChecker",
    "Extractor",
    "NoContinuityCheck",
    "NoExtraction",
    "Placement",
    "RecallQuery",
    "ReplyUnderReview",
]
