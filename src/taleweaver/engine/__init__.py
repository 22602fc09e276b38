"""The turn pipeline, session kinds and the engine that wires them."""

from taleweaver.engine.engine import Engine

__all__ = ["Engine"]
