"""`taleweaver` commands for: World memory."""

from __future__ import annotations

import click

commands: list[click.Command] = []
