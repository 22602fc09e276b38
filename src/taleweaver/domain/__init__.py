"""Pure models and rules: no I/O, imports nothing above this layer."""
