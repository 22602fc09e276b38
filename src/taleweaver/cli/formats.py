"""The export formats' names, one set for `export session` and `sessions export`
(engine.export.FORMATS maps them; a test keeps the two in step). Light: the CLI
imports it at start-up."""

from __future__ import annotations

import click

EXPORT_FORMATS = ("markdown", "md", "text", "txt", "json", "jsonl", "sillytavern")
EXPORT_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS, case_sensitive=False),
    default="markdown",
    show_default=True,
    help="markdown (md), text (txt), json (with its events), jsonl (SillyTavern chat).",
)
