"""The `pujiang` command's account and database subcommands."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pujiang import __version__
from pujiang.cli import app as cli_app
from pujiang.platform.deps import AppContext


@pytest.fixture
def cli(context: AppContext, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PUJIANG_DATABASE_URL", context.settings.database_url)
    return CliRunner()


def test_version() -> None:
    result = CliRunner().invoke(cli_app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_users_create_list_disable(cli: CliRunner) -> None:
    created = cli.invoke(
        cli_app,
        [
            "users",
            "create",
            "wang.wu",
            "--role",
            "handler",
            "--department",
            "SW",
            "--password-stdin",
        ],
        input="a-good-password\n",
    )
    assert created.exit_code == 0, created.output
    listed = cli.invoke(cli_app, ["users", "list"])
    assert "wang.wu" in listed.output
    assert "SW" in listed.output
    assert "active" in listed.output
    assert cli.invoke(cli_app, ["users", "disable", "wang.wu"]).exit_code == 0
    assert "disabled" in cli.invoke(cli_app, ["users", "list"]).output


def test_users_create_rejects_bad_input(cli: CliRunner) -> None:
    weak = cli.invoke(
        cli_app,
        ["users", "create", "wang.wu", "--role", "handler", "--password-stdin"],
        input="123\n",
    )
    assert weak.exit_code == 2
    assert "密码太弱" in weak.output
    role = cli.invoke(
        cli_app,
        ["users", "create", "wang.wu", "--role", "emperor", "--password-stdin"],
        input="a-good-password\n",
    )
    assert role.exit_code == 2
    assert "emperor" in role.output
    assert "wang.wu" not in cli.invoke(cli_app, ["users", "list"]).output
    missing = cli.invoke(cli_app, ["users", "disable", "nobody"])
    assert missing.exit_code == 2
    assert "nobody" in missing.output


def test_db_current(cli: CliRunner) -> None:
    result = cli.invoke(cli_app, ["db", "current"])
    assert result.exit_code == 0, result.output
    assert "current:" in result.output


@pytest.mark.parametrize("bad", ["0", "65", "two"])
def test_serve_refuses_a_bad_worker_count(cli: CliRunner, bad: str) -> None:
    result = cli.invoke(cli_app, ["serve", "--workers", bad])
    assert result.exit_code == 2
    assert "--workers" in result.output


def test_serve_refuses_a_bad_workers_setting(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUJIANG_WORKERS", "0")
    result = cli.invoke(cli_app, ["serve"])
    assert result.exit_code == 2
    assert "workers" in result.output
