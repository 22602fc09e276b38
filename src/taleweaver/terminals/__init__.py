"""Terminal sessions: a command on a pseudo-terminal whose lifecycle is an event
stream and whose output is kept, capped, for replay (issue #20)."""

from taleweaver.terminals.service import Terminals

__all__ = ["Terminals"]
