"""The crisis protocol's types live in the domain, where safety and therapy meet."""

from taleweaver.domain.crisis import CrisisLevel, CrisisProtocol, CrisisResponse, CrisisSignal

__all__ = ["CrisisLevel", "CrisisProtocol", "CrisisResponse", "CrisisSignal"]
