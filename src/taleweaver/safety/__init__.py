"""Safety checks on player input and narrator output; the crisis protocol."""

from taleweaver.safety.checker import AllowAll, SafetyChecker, SafetyDetector, SafetySubject

__all__ = ["AllowAll", "SafetyChecker", "SafetyDetector", "SafetySubject"]
