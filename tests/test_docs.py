"""The docs keep up with the code: every setting and every command is documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer.main

from pujiang.cli import app as cli_app
from pujiang.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _docs() -> str:
    return "\n".join(p.read_text("utf-8") for p in sorted((ROOT / "docs").glob("*.md")))


def test_every_setting_is_documented() -> None:
    docs = (ROOT / "docs" / "getting-started.md").read_text("utf-8")
    missing = [name for name in Settings.model_fields if f"`{name}`" not in docs]
    assert missing == [], f"settings missing from docs/getting-started.md: {missing}"


def _commands(group: Any, prefix: str = "pujiang") -> list[str]:
    # Typer ships its own copy of click, so groups are recognised by their sub-commands.
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):
            found += _commands(command, path)
        else:
            found.append(path)
    return found


def test_every_command_is_documented() -> None:
    group = typer.main.get_command(cli_app)
    docs = _docs()
    missing = [c for c in _commands(group) if f"`{c}" not in docs]
    assert missing == [], f"commands missing from docs/: {missing}"
