"""Routers, one module per resource."""

# Modules are imported by name; nothing is re-exported here.
__all__: list[str] = []
