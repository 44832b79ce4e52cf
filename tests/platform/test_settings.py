"""Settings: PUJIANG_* variables, a YAML file, and refusal of unsafe values outside development."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pujiang.cli import app as cli_app
from pujiang.settings import DEV_SECRET, Mode, SettingsError, load_settings

STRONG = "k" * 10 + "-Zq8w3rT6yU1iO0pLm4nB7vC2xZ5aS9d"


def test_environment_and_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "pujiang.yaml"
    config.write_text("port: 8100\nlog_level: debug\n", encoding="utf-8")
    assert load_settings(config).port == 8100
    assert load_settings(config).log_level == "DEBUG"
    monkeypatch.setenv("PUJIANG_PORT", "8200")
    assert load_settings(config).port == 8200  # the environment overrides the file


def test_unknown_or_bad_settings_are_named(tmp_path: Path) -> None:
    config = tmp_path / "pujiang.yaml"
    config.write_text("prot: 1\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="prot"):
        load_settings(config)
    config.write_text("port: 99999\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="port"):
        load_settings(config)
    config.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="mapping"):
        load_settings(config)
    with pytest.raises(SettingsError, match="database_url"):
        load_settings(database_url="mysql://x")


def test_postgres_url_gets_the_psycopg_driver() -> None:
    url = load_settings(database_url="postgresql://u:p@h/db").database_url
    assert url == "postgresql+psycopg://u:p@h/db"


@pytest.mark.parametrize("secret", [DEV_SECRET, "secret", "short-but-random-xyz"])
def test_weak_secret_stops_production(secret: str) -> None:
    settings = load_settings(mode=Mode.PRODUCTION, secret_key=secret)
    with pytest.raises(SettingsError, match="PUJIANG_SECRET_KEY"):
        settings.check_startable()


def test_strong_secret_starts_and_development_allows_the_default() -> None:
    load_settings(mode=Mode.PRODUCTION, secret_key=STRONG).check_startable()
    load_settings(mode=Mode.DEVELOPMENT).check_startable()


def test_serve_refuses_a_weak_secret_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUJIANG_MODE", "production")
    monkeypatch.delenv("PUJIANG_SECRET_KEY", raising=False)
    result = CliRunner().invoke(cli_app, ["serve"])
    assert result.exit_code == 2
    assert "PUJIANG_SECRET_KEY" in result.output


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUJIANG_SECRET_KEY", STRONG)
    monkeypatch.setenv("PUJIANG_DATABASE_URL", "postgresql+psycopg://city:pa55word@db:5432/pujiang")
    result = CliRunner().invoke(cli_app, ["config", "show"])
    assert result.exit_code == 0
    assert STRONG not in result.output
    assert "pa55word" not in result.output
    assert "postgresql+psycopg://city:***@db:5432/pujiang" in result.output
