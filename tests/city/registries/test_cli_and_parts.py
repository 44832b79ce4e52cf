"""`pujiang registry` commands, and the small parts: headers, encodings, cells, masks, ranges."""

from __future__ import annotations

import io
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from pujiang.city.registries.columns import Kind, header_index, header_key
from pujiang.city.registries.models import Person
from pujiang.city.registries.service import _next_prefix, mask_address
from pujiang.cli import app as cli_app
from pujiang.platform.deps import AppContext
from pujiang.platform.models import AuditEntry
from pujiang.platform.tabular import EXCEL_NUMBER_MARK, cell_text, detect_encoding
from tests.city.registries.conftest import csv_bytes


@pytest.fixture
def cli(context: AppContext, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PUJIANG_DATABASE_URL", context.settings.database_url)
    return CliRunner()


def test_cli_import_generate_and_stats(cli: CliRunner, context: AppContext, tmp_path: Path) -> None:
    path = tmp_path / "persons.csv"
    made = cli.invoke(
        cli_app,
        ["registry", "generate", "persons", str(path), "--count", "300", "--encoding", "gb18030"],
    )
    assert made.exit_code == 0, made.output
    imported = cli.invoke(cli_app, ["registry", "import", "persons", str(path)])
    assert imported.exit_code == 0, imported.output
    assert "新增 inserted 300" in imported.output
    stats = cli.invoke(cli_app, ["registry", "stats"])
    assert "persons 300" in stats.output
    with context.db.session() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "registry.import")
        ).one()
    assert (entry.actor, entry.outcome, entry.detail["inserted"]) == ("cli", "success", 300)


def test_cli_rejects_a_bad_file_and_writes_the_errors(
    cli: CliRunner, context: AppContext, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(
        csv_bytes(
            [["姓名", "身份证号"], ["张三", "11010519491231002X"], ["李四", "110105194912310021"]],
            "gbk",
        )
    )
    errors = tmp_path / "errors.csv"
    result = cli.invoke(
        cli_app, ["registry", "import", "persons", str(path), "--errors", str(errors)]
    )
    assert result.exit_code == 1
    assert "第 3 行" in result.output
    assert "check character" in result.output
    assert "未导入任何数据" in result.output
    lines = errors.read_text("utf-8-sig").splitlines()
    assert lines[0].startswith("行号 row")
    assert lines[1].startswith("3,身份证号,id_number,id_number.check_digit")
    with context.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Person)) == 0
        failed = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "registry.import")
        ).one()
    assert failed.outcome == "failure"
    partial = cli.invoke(cli_app, ["registry", "import", "persons", str(path), "--partial"])
    assert partial.exit_code == 0
    unreadable = tmp_path / "x.csv"
    unreadable.write_text("a,b\n1,2\n")
    assert cli.invoke(cli_app, ["registry", "import", "persons", str(unreadable)]).exit_code == 2


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("身份证号码", "id_number"),
        ("公民身份号码（必填）", "id_number"),
        ("ID Number", "id_number"),
        ("id_number", "id_number"),
        ("\ufeff姓名", "name"),
        ("姓名*", "name"),
        ("手机号码", "phone"),
        ("Mobile", "phone"),
        ("户籍地址", "household_address"),
        ("现住址", "residence_address"),
        ("经度", "lon"),
        ("Ｌｏｎｇｉｔｕｄｅ", "lon"),
        ("社区代码", "community_code"),
    ],
)
def test_person_headers(header: str, field: str) -> None:
    assert header_index(Kind.PERSONS)[header_key(header)].field == field


def test_entity_and_address_headers() -> None:
    entities = header_index(Kind.ENTITIES)
    assert entities[header_key("统一社会信用代码")].field == "credit_code"
    assert entities[header_key("企业名称")].field == "name"
    assert entities[header_key("法人代表")].field == "legal_representative"
    assert entities[header_key("经营状态")].field == "status"
    addresses = header_index(Kind.ADDRESSES)
    assert addresses[header_key("标准地址")].field == "address"
    assert addresses[header_key("单元网格")].field == "grid_code"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("姓名\n张三\n".encode(), "utf-8"),
        ("姓名\n张三\n".encode("utf-8-sig"), "utf-8-sig"),
        ("姓名\n张三\n".encode("gbk"), "gbk"),
        ("姓名\n刘䶮\n".encode("gb18030"), "gb18030"),
        (b"name\nLi Lei\n", "utf-8"),
    ],
)
def test_detect_encoding(data: bytes, expected: str) -> None:
    assert detect_encoding(io.BytesIO(data)) == expected


def test_cell_text() -> None:
    assert cell_text(None) == ""
    assert cell_text(13812341234) == "13812341234"
    assert cell_text(121.5) == "121.5"
    assert cell_text(310101002001.0) == "310101002001"
    assert cell_text(datetime(1990, 1, 2)) == "1990-01-02"
    assert cell_text(date(1990, 1, 2)) == "1990-01-02"
    assert cell_text(1.10105194912310e17).startswith(EXCEL_NUMBER_MARK)


def test_mask_address() -> None:
    assert mask_address("上海市黄浦区福州路1号") == "上海市黄浦区*****"
    assert mask_address("江苏省昆山市前进路8号") == "江苏省昆山市*****"
    assert mask_address("福州路100弄3号") == "福州路******"  # no district: a third kept
    assert mask_address("") == ""
    assert mask_address(None) is None


def test_next_prefix() -> None:
    assert _next_prefix("张") == "弡"
    assert _next_prefix("张三") == "张上"  # U+4E09 -> U+4E0A
    assert _next_prefix("a\U0010ffff") == "b"
    assert _next_prefix("\ud7ff") == "\ue000"
    assert _next_prefix("\U0010ffff") is None
