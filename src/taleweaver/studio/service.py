"""The studio's services, built once per engine."""

from __future__ import annotations

from taleweaver.domain.studio import ContentRulesPort, WorldBiblePort
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore
from taleweaver.studio.blueprints import Blueprints
from taleweaver.studio.hooks import StudioRecords
from taleweaver.studio.recipes import RecipeVault
from taleweaver.studio.structure import ChatToStructure


class Studio:
    """Project blueprints, the recipe vault, chat to structure, and the records of
    the studio's webhooks and policy. The world bible and a world's content rules
    come in as the shapes `domain.studio` names."""

    def __init__(
        self,
        db: Database,
        store: EventStore,
        *,
        bible: WorldBiblePort,
        content: ContentRulesPort,
    ) -> None:
        self.blueprints = Blueprints(db, store, bible, content)
        self.recipes = RecipeVault(db, store, bible)
        self.structure = ChatToStructure(db, self.blueprints, self.recipes, bible)
        # Webhook secrets are sealed with the store's key ring.
        keys = store.sealer.keys if store.sealer is not None else None
        self.records = StudioRecords(db, store, keys)
