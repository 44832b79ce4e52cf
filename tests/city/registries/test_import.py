"""Importing registry files: encodings, formats, every bad row reported, nothing half-imported."""

from __future__ import annotations

import io
from datetime import date, datetime
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from pujiang.city.registries.columns import Kind
from pujiang.city.registries.ingest import (
    ImportOptions,
    ImportRejected,
    ImportReport,
    import_file,
)
from pujiang.city.registries.locate import Locator
from pujiang.city.registries.models import Address, LegalEntity, Person
from pujiang.platform.deps import AppContext
from pujiang.platform.geo import Crs, wgs84_to_gcj02
from pujiang.platform.identifiers import make_id_number, make_org_code, uscc_check_char
from pujiang.platform.tabular import FileProblem
from tests.city.registries.conftest import FAKE_PLACE, csv_bytes, fake_locator, standards

PERSON_HEADER = [
    "姓名",
    "身份证号",
    "性别",
    "出生日期",
    "手机号",
    "户籍地址",
    "居住地址",
    "社区代码",
]


def run_import(
    context: AppContext,
    kind: Kind,
    data: bytes,
    *,
    partial: bool = False,
    locator: Locator | None = None,
    crs: Crs = Crs.WGS84,
) -> ImportReport:
    with context.db.session() as session:
        return import_file(
            session,
            kind,
            io.BytesIO(data),
            source="test",
            options=ImportOptions(partial=partial, crs=crs),
            locator=locator,
        )


def rejected(context: AppContext, kind: Kind, data: bytes) -> ImportReport:
    with pytest.raises(ImportRejected) as caught:
        run_import(context, kind, data)
    return caught.value.report


def count(context: AppContext, model: Any) -> int:
    with context.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def person(context: AppContext, id_number: str) -> Person:
    with context.db.session() as session:
        return session.scalars(select(Person).where(Person.id_number == id_number)).one()


# -- identifiers --------------------------------------------------------------------------------


def test_reference_id_vectors_as_import_rows(context: AppContext) -> None:
    vectors = standards()["id_number"]["test_vectors_verified_by_computation"]
    rows = [["姓名", "身份证号"]] + [[f"测试{i}", v["id"]] for i, v in enumerate(vectors)]
    report = run_import(context, Kind.PERSONS, csv_bytes(rows), partial=True)
    by_row = {error.row: error for error in report.errors}
    for i, vector in enumerate(vectors):
        row = i + 2  # the header is row 1
        if vector["id"] == "440524188001010014":
            # Valid check character, but born in 1880: the platform's 1900-01-01 floor wins.
            assert by_row[row].code == "id_number.birth_date_range"
        elif vector["valid"]:
            assert row not in by_row, by_row[row]
            assert person(context, vector["id"]).name == f"测试{i}"
        else:
            assert by_row[row].code == "id_number.check_digit"
            assert by_row[row].column == "身份证号"
    assert report.inserted == count(context, Person) == 5


def test_derived_sex_and_birth_date_are_cross_checked(context: AppContext) -> None:
    rows = [
        ["姓名", "身份证号", "性别", "出生日期"],
        ["张三", "11010519491231002X", "女", "1949-12-31"],  # good
        ["李四", "11010519491231002X".lower(), "F", "1949/12/31"],  # good, other spellings
        ["王五", "360426199101010071", "女", ""],  # the number says male
        ["赵六", "44011320141005001X", "", "2014-10-06"],  # the number says 2014-10-05
        ["钱七", "34052419800101001X", "不详", ""],
        ["孙八", "120103198806018241", "", "1988-02-30"],
    ]
    report = run_import(context, Kind.PERSONS, csv_bytes(rows), partial=True)
    codes = {(e.row, e.code) for e in report.errors}
    assert codes == {
        (3, "duplicate"),  # the same person as row 2, differently written
        (4, "sex_mismatch"),
        (5, "birth_mismatch"),
        (6, "sex_unknown"),
        (7, "date_format"),
    }
    stored = person(context, "11010519491231002X")
    assert (stored.sex, stored.birth_date.isoformat()) == ("F", "1949-12-31")
    mismatch = next(e for e in report.errors if e.code == "sex_mismatch")
    assert "男" in mismatch.message_zh
    assert "male" in mismatch.message_en


def test_reference_credit_codes_and_a_letter_bearing_org_code(context: AppContext) -> None:
    vectors = standards()["uscc"]["test_vectors"]
    # A valid check character over an org code whose own (GB 11714) check is wrong.
    body = "MA1K3BTP"
    good_org = make_org_code(body)
    bad_org = body + ("0" if good_org[-1] != "0" else "1")
    broken = "91310115" + bad_org
    broken += uscc_check_char(broken)
    rows = [["统一社会信用代码", "名称", "法定代表人", "登记状态"]]
    rows += [[v["code"], f"测试公司{i}", "王小明", "存续"] for i, v in enumerate(vectors)]
    rows.append([broken, "测试公司X", "", "在业"])
    report = run_import(context, Kind.ENTITIES, csv_bytes(rows), partial=True)
    by_row = {e.row: e.code for e in report.errors}
    assert by_row == {
        4: "uscc.charset",  # 91350100M000100Y4Z: Z is not a credit-code character
        6: "uscc.check_char",  # 91110000600037341N
        7: "uscc.org_code_check",
    }
    assert report.inserted == 3
    with context.db.session() as session:
        pudong = session.scalars(
            select(LegalEntity).where(LegalEntity.credit_code == "91310115MA1K3BTP2B")
        ).one()
        # No place given: the registering authority's district (positions 3-8) is kept.
        assert pudong.district_code == "310115"
        assert pudong.entity_type == "企业"  # from positions 1-2 when the file has no type


def test_entity_status_and_dates(context: AppContext) -> None:
    rows = [
        ["credit code", "name", "status", "established on", "legal representative"],
        ["91110000600037341L", "Beijing One", "revoked", "2001-05-06", "李雷"],
        ["91350100M000100Y43", "Fuzhou Two", "半死不活", "2001-13-01", "韩梅梅"],
    ]
    report = run_import(context, Kind.ENTITIES, csv_bytes(rows), partial=True)
    assert {(e.row, e.code) for e in report.errors} == {(3, "status"), (3, "date_format")}
    with context.db.session() as session:
        entity = session.scalars(select(LegalEntity)).one()
        assert (entity.status, entity.established_on.isoformat()) == ("吊销", "2001-05-06")


# -- encodings and formats -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "name", "detected"),
    [
        ("utf-8", "张三", "utf-8"),
        ("utf-8-sig", "张三", "utf-8-sig"),
        ("gbk", "张三", "gbk"),
        ("gb18030", "刘䶮", "gb18030"),  # 䶮 is not in GBK
        ("gb18030", "王𬱖", "gb18030"),  # a four-byte GB18030 character
        ("utf-16", "张三", "utf-16"),  # with its BOM
    ],
)
def test_encodings(context: AppContext, encoding: str, name: str, detected: str) -> None:
    rows = [
        PERSON_HEADER,
        [
            name,
            "11010519491231002X",
            "女",
            "",
            "13812341234",
            "北京市朝阳区",
            "上海市黄浦区福州路1号",
            "310101002001",
        ],
    ]
    report = run_import(context, Kind.PERSONS, csv_bytes(rows, encoding))
    assert (report.encoding, report.format, report.inserted) == (detected, "csv", 1)
    stored = person(context, "11010519491231002X")
    assert (stored.name, stored.household_address) == (name, "北京市朝阳区")
    assert (stored.community_code, stored.district_code) == ("310101002001", "310101")


def test_gbk_file_with_an_ascii_first_megabyte(context: AppContext) -> None:
    # Over 1 MB of ASCII rows before the first Chinese character: detection must look on.
    rows: list[list[str]] = [["id_number", "name", "household_address"]]
    for i in range(6000):
        number = make_id_number("310101", date(1960, 1, 1 + i % 28), i % 1000, "M")
        rows.append([number, f"Li Lei {i}", "Shanghai " + "x" * 150])
    rows[-1][1] = "韩梅梅"
    report = run_import(context, Kind.PERSONS, csv_bytes(rows, "gbk"))
    assert (report.encoding, report.inserted, report.errors) == ("gbk", 6000, [])
    with context.db.session() as session:
        assert session.scalar(select(func.count()).where(Person.name == "韩梅梅")) == 1


def test_undecodable_bytes_are_a_file_error(context: AppContext) -> None:
    data = "姓名,身份证号\n".encode() + b"\xff\xfe\xfd\xfc,123\n"
    with pytest.raises(FileProblem) as caught:
        run_import(context, Kind.PERSONS, data)
    assert caught.value.status == 422
    assert caught.value.slug == "import-file-invalid"


def _xlsx(rows: list[list[Any]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["上海市人口信息表"])  # a title row above the header
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_xlsx_file(context: AppContext) -> None:
    data = _xlsx(
        [
            ["身份证号（必填）", "姓名*", "出生日期", "手机号码", "居住地址", "备注"],
            ["11010519491231002X", "张三", datetime(1949, 12, 31), 13812341234, "上海市", "x"],
            ["360426199101010071", "李四", None, None, None, None],
            [440113201410050000, "王五", None, None, None, None],  # typed as a number
        ]
    )
    report = run_import(context, Kind.PERSONS, data, partial=True)
    assert (report.format, report.header_row, report.inserted) == ("xlsx", 2, 2)
    assert report.ignored_columns == ["备注"]
    assert report.columns["id_number"] == "身份证号（必填）"
    [error] = report.errors
    assert (error.row, error.code) == (5, "excel_number")
    assert "文本" in error.message_zh
    assert "text" in error.message_en
    assert person(context, "11010519491231002X").phone == "13812341234"


def test_legacy_xls_and_other_files_are_refused(context: AppContext) -> None:
    with pytest.raises(FileProblem) as caught:
        run_import(context, Kind.PERSONS, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)
    assert caught.value.status == 415
    with pytest.raises(FileProblem) as caught:
        run_import(context, Kind.PERSONS, b"")
    assert caught.value.status == 422


def test_header_problems(context: AppContext) -> None:
    with pytest.raises(FileProblem) as caught:
        run_import(context, Kind.PERSONS, csv_bytes([["姓名", "电话"], ["张三", "1"]]))
    assert "身份证号" in caught.value.detail
    with pytest.raises(FileProblem) as caught:
        run_import(context, Kind.PERSONS, csv_bytes([["姓名", "身份证号", "公民身份号码"]]))
    assert "公民身份号码" in caught.value.detail
    with pytest.raises(FileProblem):
        run_import(context, Kind.PERSONS, csv_bytes([["姓名", "身份证号"]]))  # no data rows


# -- bad rows -------------------------------------------------------------------------------


def test_a_file_with_bad_rows_is_rejected_whole(context: AppContext) -> None:
    rows = [
        PERSON_HEADER,
        ["张三", "11010519491231002X", "女", "", "", "", "", ""],
        ["", "360426199101010072", "", "", "", "", "", ""],  # no name, bad check digit
        ["", "", "", "", "", "", "", ""],  # blank: skipped, not an error
        ["王五", "44011320141005001X", "", "", "12345", "", "", ""],  # bad phone
        ["赵六", "34052419800101001X", "", "", "", "", "", "31010100200"],  # bad community
        ["钱七", "120103198806018241", "", "", "021-62345678", "", "", ""],  # good
    ]
    report = rejected(context, Kind.PERSONS, csv_bytes(rows, "gbk"))
    assert [(e.row, e.field, e.code) for e in report.errors] == [
        (3, "id_number", "id_number.check_digit"),
        (3, "name", "required"),
        (5, "phone", "phone"),
        (6, "community_code", "community_code"),
    ]
    assert (report.rows, report.bad_rows, report.imported) == (5, 3, False)
    for error in report.errors:
        assert error.message_zh
        assert error.message_en
        assert error.message_zh != error.message_en
    assert count(context, Person) == 0


def test_rejection_after_a_full_batch_rolls_everything_back(context: AppContext) -> None:
    rows: list[list[str]] = [["姓名", "身份证号"]]
    for i in range(250):
        rows.append([f"张{i}", make_id_number("310104", date(1980, 1, 1 + i % 28), i, "F")])
    rows.append(["坏", "310104198001010000"])
    data = csv_bytes(rows)
    with pytest.raises(ImportRejected), context.db.session() as session:
        import_file(session, Kind.PERSONS, io.BytesIO(data), options=ImportOptions(batch_size=100))
    assert count(context, Person) == 0


def test_partial_import_keeps_the_good_rows(context: AppContext) -> None:
    rows = [
        ["姓名", "身份证号"],
        ["张三", "11010519491231002X"],
        ["李四", "11010519491231002"],
        ["王五", "360426199101010071"],
    ]
    report = run_import(context, Kind.PERSONS, csv_bytes(rows), partial=True)
    assert (report.imported, report.inserted, report.bad_rows) == (True, 2, 1)
    assert [(e.row, e.code) for e in report.errors] == [(3, "id_number.length")]


def test_reimport_updates_instead_of_duplicating(context: AppContext) -> None:
    first = [
        PERSON_HEADER,
        [
            "张三",
            "11010519491231002X",
            "",
            "",
            "13812341234",
            "北京",
            "上海市黄浦区福州路1号",
            "310101002001",
        ],
    ]
    assert run_import(context, Kind.PERSONS, csv_bytes(first)).inserted == 1
    # A later file without the address columns changes the phone and keeps the addresses.
    second = [["身份证号", "姓名", "手机号"], ["11010519491231002x", "张三丰", "13900001111"]]
    report = run_import(context, Kind.PERSONS, csv_bytes(second))
    assert (report.inserted, report.updated) == (0, 1)
    assert count(context, Person) == 1
    stored = person(context, "11010519491231002X")
    assert (stored.name, stored.phone) == ("张三丰", "13900001111")
    assert (stored.residence_address, stored.community_code) == (
        "上海市黄浦区福州路1号",
        "310101002001",
    )
    assert stored.updated_at > stored.created_at


# -- locating ---------------------------------------------------------------------------------


def test_residence_points_are_located_in_batches(context: AppContext) -> None:
    calls: list[list[tuple[float, float]]] = []
    rows = [
        ["姓名", "身份证号", "经度", "纬度", "社区代码"],
        ["张三", "11010519491231002X", "121.48", "31.23", ""],
        ["李四", "360426199101010071", "120.50", "31.00", ""],  # outside the city
        ["王五", "44011320141005001X", "121.40", "", ""],  # half a point
        ["赵六", "34052419800101001X", "121.48", "31.23", "310104003002"],  # given: not located
        ["钱七", "120103198806018241", "", "", ""],  # no point at all
    ]
    report = run_import(
        context, Kind.PERSONS, csv_bytes(rows), partial=True, locator=fake_locator(calls)
    )
    assert [(e.row, e.code) for e in report.errors] == [(3, "outside_city"), (4, "coordinate_pair")]
    assert (report.located, report.inserted) == (1, 3)
    assert calls == [[(121.48, 31.23), (120.5, 31.0)]]  # one call for the batch
    assert person(context, "11010519491231002X").community_code == FAKE_PLACE.community_code
    assert person(context, "34052419800101001X").community_code == "310104003002"
    assert person(context, "120103198806018241").community_code is None


def test_without_a_city_points_are_kept_unlocated(context: AppContext) -> None:
    rows = [["姓名", "身份证号", "经度", "纬度"], ["张三", "11010519491231002X", "121.48", "31.23"]]
    report = run_import(context, Kind.PERSONS, csv_bytes(rows), locator=lambda lons, lats: None)
    assert (report.unlocated, report.located, report.inserted) == (1, 0, 1)
    stored = person(context, "11010519491231002X")
    assert (stored.residence_lon, stored.community_code) == (121.48, None)


def test_gcj02_points_are_stored_in_wgs84(context: AppContext) -> None:
    calls: list[list[tuple[float, float]]] = []
    lon, lat = wgs84_to_gcj02(121.48, 31.23)
    rows = [["标准地址", "经度", "纬度"], ["上海市黄浦区福州路 １２３号", f"{lon}", f"{lat}"]]
    report = run_import(
        context, Kind.ADDRESSES, csv_bytes(rows), locator=fake_locator(calls), crs=Crs.GCJ02
    )
    assert report.located == 1
    with context.db.session() as session:
        address = session.scalars(select(Address)).one()
    assert address.address == "上海市黄浦区福州路123号"  # full-width folded, spaces dropped
    assert abs(address.lon - 121.48) < 1e-6
    assert abs(address.lat - 31.23) < 1e-6
    assert calls[0][0] == pytest.approx((121.48, 31.23), abs=1e-6)
    assert address.grid_code == FAKE_PLACE.grid_code


def test_addresses_with_given_grids(context: AppContext) -> None:
    rows = [
        ["address", "building", "lon", "lat", "grid code", "community code"],
        ["上海市黄浦区福州路1号", "一号楼", "121.48", "31.23", "310101002001003", ""],
        ["上海市黄浦区福州路2号", "", "121.48", "31.23", "310101002001003", "310101002009"],
        ["上海市黄浦区福州路3号", "", "", "", "", ""],
        ["上海市黄浦区福州路1号", "", "121.48", "31.23", "", ""],
    ]
    report = run_import(context, Kind.ADDRESSES, csv_bytes(rows), partial=True)
    assert [(e.row, e.code) for e in report.errors] == [
        (3, "grid_community"),
        (4, "required"),
        (5, "duplicate"),
    ]
    with context.db.session() as session:
        address = session.scalars(select(Address)).one()
    assert (address.grid_code, address.community_code, address.district_code) == (
        "310101002001003",
        "310101002001",
        "310101",
    )
    assert address.building_name == "一号楼"


def test_an_address_community_from_the_file_wins_over_its_point(context: AppContext) -> None:
    rows = [
        ["标准地址", "经度", "纬度", "社区代码"],
        ["上海市黄浦区福州路1号", "121.48", "31.23", FAKE_PLACE.community_code],  # grid added
        ["上海市黄浦区福州路2号", "121.48", "31.23", "310101002009"],  # other community: no grid
        ["上海市黄浦区福州路3号", "120.10", "31.23", "310101002009"],  # outside: kept, no grid
    ]
    report = run_import(context, Kind.ADDRESSES, csv_bytes(rows), locator=fake_locator())
    assert (report.inserted, report.located, report.errors) == (3, 1, [])
    with context.db.session() as session:
        found = session.execute(
            select(Address.address, Address.community_code, Address.grid_code).order_by(
                Address.address
            )
        ).all()
    assert [tuple(row) for row in found] == [
        ("上海市黄浦区福州路1号", FAKE_PLACE.community_code, FAKE_PLACE.grid_code),
        ("上海市黄浦区福州路2号", "310101002009", None),
        ("上海市黄浦区福州路3号", "310101002009", None),
    ]
