"""The one Settings model: everything an operator sets, from PUJIANG_* variables or a YAML file.

Nothing else in Pujiang reads the environment. Settings are built by `load_settings()` (the
CLI and `create_app`), never at import time.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

DEV_SECRET = "pujiang-development-secret-do-not-use-in-production"  # noqa: S105 - a known dev value
MIN_SECRET_LENGTH = 32
_WEAK_SECRETS = {"", "secret", "changeme", "change-me", "password", "pujiang", DEV_SECRET}


class Mode(enum.StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class SettingsError(Exception):
    """Settings that must not be used to start Pujiang; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PUJIANG_", extra="forbid")

    mode: Mode = Mode.DEVELOPMENT
    database_url: str = "sqlite:///var/pujiang.db"
    secret_key: SecretStr = SecretStr(DEV_SECRET)  # refused outside development
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # `pujiang serve`: server processes (docs/architecture.md "Several server processes").
    workers: int = Field(1, ge=1, le=64)
    log_level: str = "INFO"
    log_json: bool = True
    default_language: str = "zh-CN"

    access_token_minutes: int = Field(15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(7, ge=1, le=90)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)

    # Login throttling: after `login_slow_after` failures each attempt must wait, doubling the
    # wait; after `login_lock_after` failures the account is locked for `login_lock_minutes`.
    login_slow_after: int = Field(3, ge=1)
    login_lock_after: int = Field(10, ge=2)
    login_lock_minutes: int = Field(15, ge=1)

    # NGSI-LD: let GET routes of /ngsi-ld/v1 answer without a token (writes always need one).
    context_anonymous_read: bool = False
    # NGSI-LD temporal API: the most instances of one attribute in one reply (clause 6.3.10);
    # beyond it the reply is 206 Partial Content with a Content-Range to page on from.
    context_temporal_page_size: int = Field(default=1000, ge=1, le=100_000)
    # NGSI-LD: remote @context URLs downloaded on first use (docs/context.md "Content
    # negotiation"): host names separated by commas, `*` for any public host; empty: none.
    context_fetch_hosts: str = ""
    context_fetch_timeout: float = Field(default=5.0, gt=0, le=60)
    # NGSI-LD notification delivery (docs/context.md "Subscriptions and notifications"): the
    # time one send may take; a failed notification is retried after a backoff that starts at
    # `backoff_base` seconds and doubles up to `backoff_max`, until `max_attempts` sends.
    context_notify_timeout: float = Field(default=10.0, gt=0, le=300)
    context_notify_max_attempts: int = Field(default=8, ge=1, le=100)
    context_notify_backoff_base: float = Field(default=1.0, gt=0, le=3600)
    context_notify_backoff_max: float = Field(default=300.0, gt=0, le=86_400)
    context_notify_per_endpoint: int = Field(default=4, ge=1, le=64)
    # NGSI-LD history retention (docs/context.md "History retention"): history rows stored more
    # than this many days ago are purged; unset keeps every change. `pujiang serve` purges every
    # `purge_interval` seconds; 0 leaves it to `pujiang context purge-history` (cron).
    context_history_retention_days: int | None = Field(default=None, ge=1, le=36_500)
    context_history_purge_interval: float = Field(default=3600.0, ge=0, le=7 * 86_400)

    mqtt_url: str | None = None
    # Device ingest (docs/iot.md): the MQTT consumer's client id (its persistent session) and,
    # when several workers share the load, the MQTT 5 shared-subscription group.
    ingest_client_id: str = "pujiang-ingest"
    ingest_shared_group: str = ""
    ingest_batch_max: int = Field(default=1000, ge=1, le=100_000)
    ingest_batch_ms: int = Field(default=20, ge=0, le=10_000)
    ingest_max_message_bytes: int = Field(default=65_536, ge=64)
    iot_liveness_seconds: int = Field(default=30, ge=1)
    var_dir: Path = Path("var")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(
                f"log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {value!r}"
            )
        return level

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql")):
            raise ValueError(
                f"database_url must be sqlite:///PATH or postgresql+psycopg://..., not {value!r}"
            )
        if value.startswith("postgresql://"):
            # psycopg 3 is the driver we ship; SQLAlchemy's bare postgresql:// means psycopg2.
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @model_validator(mode="after")
    def _notify_backoff(self) -> Settings:
        if self.context_notify_backoff_max < self.context_notify_backoff_base:
            raise ValueError(
                "context_notify_backoff_max must not be below context_notify_backoff_base "
                f"({self.context_notify_backoff_max} < {self.context_notify_backoff_base})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then PUJIANG_* variables, then the YAML file.
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))

    def check_startable(self) -> None:
        """Refuse unsafe settings outside development; raises SettingsError saying what to set."""
        if self.mode is Mode.DEVELOPMENT:
            return
        secret = self.secret_key.get_secret_value()
        if secret.lower() in _WEAK_SECRETS or len(secret) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"PUJIANG_SECRET_KEY is unset or weak in {self.mode.value} mode: set it to a "
                f"random value of at least {MIN_SECRET_LENGTH} characters, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`. "
                f"（{self.mode.value} 模式下必须设置至少 {MIN_SECRET_LENGTH} 位的随机 "
                "PUJIANG_SECRET_KEY）"
            )

    def masked(self) -> dict[str, Any]:
        """Settings as plain data with secrets and database passwords hidden, for `config show`."""
        data = self.model_dump(mode="json")
        data["secret_key"] = "********"  # noqa: S105 - the mask, not a secret
        data["database_url"] = mask_url_password(self.database_url)
        if self.mqtt_url:
            data["mqtt_url"] = mask_url_password(self.mqtt_url)
        return data


def mask_url_password(url: str) -> str:
    """postgresql://user:pw@host/db -> postgresql://user:***@host/db."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user, has_password, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if has_password else ''}@{host}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings: explicit overrides, then PUJIANG_* variables, then the optional YAML file."""
    settings_cls: type[Settings] = Settings
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"cannot read config file {config_file}: {exc}") from exc
        if not isinstance(loaded, dict | None):
            raise SettingsError(f"config file {config_file} must hold a mapping of settings")
        config = SettingsConfigDict(**{**Settings.model_config, "yaml_file": config_file})
        settings_cls = type("FileSettings", (Settings,), {"model_config": config})
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc
