"""`taleweaver` commands for: Characters and companions."""

from __future__ import annotations

import click

commands: list[click.Command] = []
