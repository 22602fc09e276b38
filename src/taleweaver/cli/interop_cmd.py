"""`taleweaver` commands for: Imports, exports, chat files, workspace bundles and backups.."""

from __future__ import annotations

import click

commands: list[click.Command] = []
