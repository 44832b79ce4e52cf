"""The `pujiang context` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="context", no_args_is_help=True)
