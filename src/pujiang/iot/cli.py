"""The `pujiang ingest` and `pujiang simulate` commands, and `pujiang iot ...`."""

from __future__ import annotations

import typer

app = typer.Typer(help="设备接入 / Device ingest.", no_args_is_help=True)
