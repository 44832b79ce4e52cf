"""`pujiang users service-account / key-create / keys / key-revoke`: service accounts and their
API keys from the command line, usable against the API at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from pujiang.cli import app as cli_app
from pujiang.platform import audit, identity
from pujiang.platform.deps import AppContext
from pujiang.platform.models import ApiKey, AuditEntry, Principal

OPERATOR_IN_SW = ("--role", "operator", "--department", "SW")


@pytest.fixture
def cli(context: AppContext, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PUJIANG_DATABASE_URL", context.settings.database_url)
    return CliRunner()


def _run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(cli_app, ["users", *args])


def _create(cli: CliRunner, name: str) -> str:
    """Create a service account, an operator in SW; its key."""
    result = _run(cli, "service-account", name, *OPERATOR_IN_SW)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def _prefix(key: str) -> str:
    return "_".join(key.split("_", 2)[:2])  # pjk_<prefix>_<secret>; the secret may hold "_"


def _secret(key: str) -> str:
    return key.split("_", 2)[2]


def _key_ids(context: AppContext, name: str) -> list[int]:
    with context.db.session() as session:
        account = identity.get_service_account(session, name)
        return [row.id for row in identity.list_api_keys(session, account)]


def _row_counts(context: AppContext) -> tuple[int, int, int]:
    with context.db.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Principal)) or 0,
            session.scalar(select(func.count()).select_from(ApiKey)) or 0,
            session.scalar(select(func.count()).select_from(AuditEntry)) or 0,
        )


def _cli_audit(context: AppContext) -> list[tuple[str, str]]:
    with context.db.session() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.actor == "cli").order_by(AuditEntry.id)
        )
        return [(row.action, row.target) for row in rows]


def _status(client: TestClient, key: str, path: str = "/api/departments") -> int:
    return client.get(path, headers={"X-API-Key": key}).status_code


def test_created_key_is_shown_once_and_works_until_revoked(
    cli: CliRunner, client: TestClient, context: AppContext
) -> None:
    created = _run(
        cli, "service-account", "feed-bot", *OPERATOR_IN_SW, "--description", "水务 gateway"
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()  # stdout carries the key alone, for KEY=$(...)
    assert key.startswith("pjk_")
    assert "\n" not in key
    assert "只显示这一次" in created.stderr
    assert "shown only once" in created.stderr
    assert f"X-API-Key: {key}" in created.stderr

    assert _status(client, key) == 200  # departments.read: an operator may
    assert _status(client, key, "/api/users") == 403  # users.read: an operator may not
    me = client.get("/api/auth/me", headers={"X-API-Key": key}).json()
    assert (me["username"], me["kind"], me["roles"]) == ("feed-bot", "service", ["operator"])

    [key_id] = _key_ids(context, "feed-bot")
    revoked = _run(cli, "key-revoke", "feed-bot", str(key_id))
    assert revoked.exit_code == 0, revoked.output
    assert _status(client, key) == 401

    assert _cli_audit(context) == [
        ("service_accounts.create", "principal:feed-bot"),
        ("api_keys.revoke", f"api_key:{key_id}"),
    ]
    with context.db.session() as session:
        assert audit.verify(session).ok


def test_second_key_and_listing_without_secrets(
    cli: CliRunner, client: TestClient, context: AppContext
) -> None:
    first = _create(cli, "feed-bot")
    issued = _run(cli, "key-create", "feed-bot", "--label", "backup gateway")
    assert issued.exit_code == 0, issued.output
    second = issued.stdout.strip()
    assert second.startswith("pjk_")
    assert second != first
    assert "shown only once" in issued.stderr
    assert _status(client, first) == 200
    assert _status(client, second) == 200

    first_id, second_id = _key_ids(context, "feed-bot")
    assert _run(cli, "key-revoke", "feed-bot", str(first_id)).exit_code == 0
    assert _status(client, first) == 401
    assert _status(client, second) == 200  # the other key is untouched

    listed = _run(cli, "keys", "feed-bot")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[1].split()[:2] == [str(first_id), _prefix(first)]
    assert "revoked" in lines[1]
    assert lines[2].split()[:2] == [str(second_id), _prefix(second)]
    assert "active" in lines[2]
    assert "backup gateway" in lines[2]
    assert lines[2].split()[4] != "-"  # used just now: its last-used time is shown
    with context.db.session() as session:
        hashes = [row.secret_hash for row in session.scalars(select(ApiKey))]
    for secret in (_secret(first), _secret(second), *hashes):
        assert secret not in listed.output

    assert [action for action, _ in _cli_audit(context)] == [
        "service_accounts.create",
        "api_keys.create",
        "api_keys.revoke",
    ]


def test_account_without_keys_is_listed_as_such(cli: CliRunner, context: AppContext) -> None:
    with context.db.session() as session:
        identity.create_service_account(session, name="feed-bot", roles=["operator"])
    listed = _run(cli, "keys", "feed-bot")
    assert listed.exit_code == 0
    assert "has no API keys" in listed.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--role", "emperor"), "角色 emperor 不存在"),
        (("--role", "emperor"), "Unknown role emperor"),  # both languages on the command line
        (("--role", "operator", "--department", "NOPE"), "部门代码 NOPE 不存在"),
        (("--role", "operator", "--department", "NOPE"), "No department with code NOPE"),
        (("--role", "operator", "--label", "x" * 200), "--label"),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(
    cli: CliRunner, context: AppContext, options: tuple[str, ...], message: str
) -> None:
    before = _row_counts(context)
    result = _run(cli, "service-account", "feed-bot", *options)
    assert result.exit_code == 2
    assert message in result.output
    assert "pjk_" not in result.output
    assert _row_counts(context) == before


def test_create_refuses_a_taken_name(
    cli: CliRunner, context: AppContext, make_user: Callable[..., str]
) -> None:
    _create(cli, "feed-bot")
    make_user("wang.wu", "handler")
    before = _row_counts(context)
    for taken in ("feed-bot", "wang.wu"):
        result = _run(cli, "service-account", taken, "--role", "operator")
        assert result.exit_code == 2
        assert f"用户名 {taken} 已存在" in result.output
    assert _row_counts(context) == before


def test_key_commands_refuse_unknown_accounts(
    cli: CliRunner, context: AppContext, make_user: Callable[..., str]
) -> None:
    make_user("wang.wu", "handler")  # a person, not a service account: no keys
    before = _row_counts(context)
    for name in ("nobody", "wang.wu"):
        for command in (["key-create", name], ["keys", name], ["key-revoke", name, "1"]):
            result = _run(cli, *command)
            assert result.exit_code == 2, command
            assert f"服务账户 {name} 不存在 / No service account named {name}" in result.output
    assert _row_counts(context) == before


def test_revoke_refuses_unknown_keys_and_other_accounts_keys(
    cli: CliRunner, client: TestClient, context: AppContext
) -> None:
    key_a = _create(cli, "feed-a")
    _create(cli, "feed-b")
    [id_a] = _key_ids(context, "feed-a")
    before = _row_counts(context)
    for key_id in (str(id_a), "999"):
        result = _run(cli, "key-revoke", "feed-b", key_id)
        assert result.exit_code == 2
        assert f"服务账户 feed-b 没有编号为 {key_id} 的 API 密钥" in result.output
    assert _row_counts(context) == before
    assert _status(client, key_a) == 200
