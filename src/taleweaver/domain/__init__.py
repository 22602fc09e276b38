"""Pure models and rules: no I/O, imports nothing above this layer."""

# Modules are imported by name; nothing is re-exported here.
__all__: list[str] = []
