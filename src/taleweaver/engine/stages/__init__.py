"""Pipeline stages: each a small object with one `run(ctx)` method."""

from taleweaver.engine.stages.base import Stage
from taleweaver.engine.stages.continuity import Continuity
from taleweaver.engine.stages.extract import Extract
from taleweaver.engine.stages.narrate import Narrate
from taleweaver.engine.stages.recall import Recall
from taleweaver.engine.stages.safety import InputSafety, OutputSafety
from taleweaver.engine.stages.understand import Understand

__all__ = [
    "Continuity",
    "Extract",
    "InputSafety",
    "Narrate",
    "OutputSafety",
    "Recall",
    "Stage",
    "Understand",
]
