"""`taleweaver` commands for: The therapeutic layer."""

from __future__ import annotations

import click

commands: list[click.Command] = []
