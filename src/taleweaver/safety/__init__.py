"""Safety checks on player input and narrator output."""

from taleweaver.safety.checker import AllowAll, SafetyChecker, SafetySubject

__all__ = ["AllowAll", "SafetyChecker", "SafetySubject"]
