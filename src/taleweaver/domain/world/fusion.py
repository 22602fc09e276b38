"""Reciprocal rank fusion: one ranking from several, without comparing their scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# The usual constant: a top rank in one list counts, but no single list dominates.
RRF_K = 60

# How far a status moves an entity: canon outranks drafts found just as well.
STATUS_WEIGHT: Mapping[str, float] = {"canon": 1.0, "reviewed": 0.8, "draft": 0.5}


# Every ranking counts the same. (A graph neighbour once counted half, and then could
# never outrank the twentieth nearest vector: relations stopped reaching the top 10.)
METHOD_WEIGHT: Mapping[str, float] = {}


def fuse(rankings: Mapping[str, Sequence[str]], *, k: int = RRF_K) -> dict[str, float]:
    """{id: sum over rankings of weight / (k + rank)}, ranks counted from 1."""
    scores: dict[str, float] = {}
    for method, ranked in rankings.items():
        weight = METHOD_WEIGHT.get(method, 1.0)
        for rank, item in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return scores


def ranked(scores: Mapping[str, float], status: Mapping[str, str], limit: int) -> list[str]:
    """Ids by fused score times status weight, best first; deprecated never."""
    weighted = {
        item: score * STATUS_WEIGHT.get(status.get(item, ""), 0.0) for item, score in scores.items()
    }
    keep = [item for item, score in weighted.items() if score > 0]
    keep.sort(key=lambda item: (-weighted[item], item))
    return keep[:limit]
