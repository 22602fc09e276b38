"""Options several commands share. Light: a command's `--help` imports it, so it
must not pull in SQLAlchemy (store.schema) or the settings."""

from __future__ import annotations

import click

# store.schema.DEFAULT_WORKSPACE_ID, which a test keeps equal to this.
DEFAULT_WORKSPACE = "local"

WORKSPACE = click.option(
    "--workspace", default=DEFAULT_WORKSPACE, show_default=True, help="Workspace id."
)
