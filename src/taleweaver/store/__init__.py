"""Event store, read models and migrations (SQLAlchemy Core, async)."""
