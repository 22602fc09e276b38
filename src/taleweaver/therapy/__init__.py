"""The therapeutic layer: player profiles and consent, goals and progress markers,
assessments, the emotional-state projection, therapy sessions' narrator context,
progress over time, export and retention."""

from taleweaver.therapy.prompt import therapy_prompt
from taleweaver.therapy.service import AssessmentOutcome, PurgeReport, TherapyService
from taleweaver.therapy.source import TherapySource

__all__ = ["AssessmentOutcome", "PurgeReport", "TherapyService", "TherapySource", "therapy_prompt"]
