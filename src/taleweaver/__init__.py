"""Taleweaver: a self-hosted engine for persistent AI narrative sessions."""

__version__ = "0.1.0"
