"""Characters and companions: cards, relationship state, greetings, group chats."""

from taleweaver.characters.service import Characters, LorebookImporter
from taleweaver.characters.source import CharacterSource

__all__ = ["CharacterSource", "Characters", "LorebookImporter"]
