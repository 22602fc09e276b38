"""`taleweaver` commands for: Safety."""

from __future__ import annotations

import click

commands: list[click.Command] = []
