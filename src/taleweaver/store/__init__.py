"""Event store, read models and migrations (SQLAlchemy Core, async)."""

# Modules are imported by name; nothing is re-exported here.
__all__: list[str] = []
