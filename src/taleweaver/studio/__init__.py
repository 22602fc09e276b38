"""The studio: project blueprints, the prompt recipe vault, and chat to structure
(a studio reply saved as a blueprint, world entries and a recipe in one call)."""

from taleweaver.studio.service import Studio

__all__ = ["Studio"]
