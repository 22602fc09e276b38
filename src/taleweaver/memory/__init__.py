"""World memory seams: what is extracted from replies and checked against canon."""

from taleweaver.memory.seams import (
    ContinuityChecker,
    Extractor,
    NoContinuityCheck,
    NoExtraction,
    ReplyUnderReview,
)

__all__ = [
    "ContinuityChecker",
    "Extractor",
    "NoContinuityCheck",
    "NoExtraction",
    "ReplyUnderReview",
]
