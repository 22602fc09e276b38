"""The export formats' names, one set for `export session` and `sessions export`
(engine.export.FORMATS maps them; a test keeps the two in step). Light: the CLI
imports it at start-up."""

from __future__ import annotations

import click

EXPORT_FORMATS = ("markdown", "md", "text", "txt", "json", "jsonl", "sillytavern")
EXPORT_FORMAT = click.option(
    "--format",
    "fmt",
    metavar="FORMAT",
    default="markdown",
    show_default=True,
    # Any name: plugins add formats, and the engine refuses an unknown one naming all.
    help="markdown (md), text (txt), json (with its events), jsonl (SillyTavern chat), "
    "or a format a plugin adds (`taleweaver plugins formats` lists them).",
)
