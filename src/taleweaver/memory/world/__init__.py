"""World memory: the world bible, hybrid recall, reviewed extraction and continuity."""

from taleweaver.memory.world.service import WorldMemory

__all__ = ["WorldMemory"]
