"""The registry routes: upload, search, masking by role with audited unmasked reads, errors."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pujiang.platform.deps import AppContext
from pujiang.platform.models import AuditEntry
from tests.city.registries.conftest import csv_bytes

PERSONS = [
    ["姓名", "身份证号", "手机号", "户籍地址", "居住地址", "社区代码"],
    [
        "张三",
        "11010519491231002X",
        "13812341234",
        "北京市朝阳区",
        "上海市黄浦区福州路1号",
        "310101002001",
    ],
    ["张三丰", "360426199101010071", "", "", "", "310104003002"],
    ["李张", "44011320141005001X", "+86 139 0000 1111", "", "", ""],
    ["欧阳娜娜", "34052419800101001X", "", "", "", "310101002001"],
]
ENTITIES = [
    ["统一社会信用代码", "名称", "类型", "注册地址", "法定代表人", "登记状态"],
    [
        "91310115MA1K3BTP2B",
        "上海浦江科技有限公司",
        "有限责任公司",
        "上海市浦东新区张江路1号",
        "王小明",
        "存续",
    ],
    ["91350100M000100Y43", "福州示例公司", "", "", "", "注销"],
]


def upload(
    client: TestClient, headers: dict[str, str], kind: str, data: bytes, **params: Any
) -> Any:
    return client.post(
        f"/api/registries/{kind}/import",
        headers=headers,
        params=params,
        files={"file": (f"{kind}.csv", data, "text/csv")},
    )


@pytest.fixture
def loaded(client: TestClient, steward: dict[str, str]) -> None:
    reply = upload(client, steward, "persons", csv_bytes(PERSONS, "gbk"))
    assert reply.status_code == 200, reply.text
    reply = upload(client, steward, "entities", csv_bytes(ENTITIES))
    assert reply.status_code == 200, reply.text


def unmasked_reads(context: AppContext) -> list[AuditEntry]:
    with context.db.session() as session:
        return list(
            session.scalars(select(AuditEntry).where(AuditEntry.action == "personal_data.read"))
        )


def test_upload_reports_and_is_audited(
    client: TestClient, context: AppContext, steward: dict[str, str]
) -> None:
    reply = upload(client, steward, "persons", csv_bytes(PERSONS, "gbk"))
    assert reply.status_code == 200
    report = reply.json()
    assert report["encoding"] == "gbk"
    assert (report["rows"], report["inserted"], report["updated"], report["errors"]) == (
        4,
        4,
        0,
        [],
    )
    assert report["columns"]["id_number"] == "身份证号"
    again = upload(client, steward, "persons", csv_bytes(PERSONS, "gbk")).json()
    assert (again["inserted"], again["updated"]) == (0, 4)
    with context.db.session() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "POST /api/registries/{kind}/import")
        ).first()
    assert entry is not None
    assert entry.target == "registry:persons"
    assert entry.detail["inserted"] == 4


def test_bad_file_over_http_lists_every_bad_row(
    client: TestClient, context: AppContext, steward: dict[str, str]
) -> None:
    rows = [*PERSONS, ["坏人", "360426199101010072", "", "", "", ""], ["", "123", "", "", "", ""]]
    reply = upload(client, steward, "persons", csv_bytes(rows))
    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert problem["type"] == "/problems/import-rejected"
    assert "未导入" in problem["detail"]
    assert [(e["row"], e["field"]) for e in problem["errors"]] == [
        (6, "id_number"),
        (7, "id_number"),
        (7, "name"),
    ]
    first = problem["errors"][0]
    assert first["message"] == first["message_zh"]
    assert "校验码" in first["message_zh"]
    assert "check character" in first["message_en"]
    assert problem["report"]["imported"] is False
    assert client.get("/api/registries/persons", headers=steward).json()["items"] == []
    # In English when asked for.
    english = upload(
        client, {**steward, "Accept-Language": "en"}, "persons", csv_bytes(rows)
    ).json()
    assert "nothing was imported" in english["detail"]
    assert english["errors"][0]["message"] == english["errors"][0]["message_en"]
    # With partial=true the good rows go in and the bad ones are still listed.
    partial = upload(client, steward, "persons", csv_bytes(rows), partial="true")
    assert partial.status_code == 200
    assert (partial.json()["inserted"], partial.json()["bad_rows"]) == (4, 2)


def test_xlsx_upload(client: TestClient, steward: dict[str, str]) -> None:
    import io

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in ENTITIES:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    reply = client.post(
        "/api/registries/entities/import",
        headers=steward,
        files={"file": ("e.xlsx", out.getvalue(), "application/octet-stream")},
    )
    assert reply.status_code == 200, reply.text
    assert (reply.json()["format"], reply.json()["inserted"]) == ("xlsx", 2)


@pytest.mark.usefixtures("loaded")
def test_handler_sees_masked_persons_and_nothing_is_audited(
    client: TestClient, context: AppContext, handler: dict[str, str]
) -> None:
    page = client.get("/api/registries/persons", headers=handler).json()
    assert page["masked"] is True
    first = page["items"][0]
    assert first["id_number"] == "110105********002X"
    assert first["name"] == "张*"
    assert first["phone"] == "138****1234"
    assert first["birth_date"] is None
    assert first["residence_lon"] is None
    assert first["residence_address"] == "上海市黄浦区*****"
    assert first["household_address"] == "北京市朝阳区"  # only a district: nothing to hide
    assert first["community_code"] == "310101002001"
    assert first["sex"] == "F"
    one = client.get(f"/api/registries/persons/{first['id']}", headers=handler).json()
    assert one["id_number"] == "110105********002X"
    assert unmasked_reads(context) == []


@pytest.mark.usefixtures("loaded")
def test_steward_sees_unmasked_persons_and_each_read_is_audited(
    client: TestClient, context: AppContext, steward: dict[str, str]
) -> None:
    page = client.get("/api/registries/persons", params={"name": "张三"}, headers=steward)
    assert page.status_code == 200
    body = page.json()
    assert body["masked"] is False
    assert [(p["name"], p["id_number"]) for p in body["items"]] == [
        ("张三", "11010519491231002X"),
        ("张三丰", "360426199101010071"),
    ]
    assert body["items"][0]["phone"] == "13812341234"
    assert body["items"][0]["birth_date"] == "1949-12-31"
    [entry] = unmasked_reads(context)
    assert entry.actor == "user:chen.steward"
    assert entry.target == "registry.persons"
    ids = [p["id"] for p in body["items"]]
    assert entry.detail == {"count": 2, "records": [f"person:{i}" for i in ids]}
    assert entry.request_id == page.headers["x-request-id"]
    client.get(f"/api/registries/persons/{ids[0]}", headers=steward)
    assert len(unmasked_reads(context)) == 2
    # An empty result reveals nothing and is not recorded.
    client.get("/api/registries/persons", params={"name": "诸葛"}, headers=steward)
    assert len(unmasked_reads(context)) == 2


@pytest.mark.usefixtures("loaded")
def test_auditor_reads_the_unmasked_read_in_the_audit_log(
    client: TestClient, steward: dict[str, str], login: Any
) -> None:
    client.get(
        "/api/registries/persons", params={"id_number": "11010519491231002x"}, headers=steward
    )
    auditor = login("zhou.auditor", "auditor", department="DSJ")
    log = client.get("/api/audit", params={"action": "personal_data.read"}, headers=auditor).json()[
        "items"
    ]
    assert [(e["actor"], e["target"], e["detail"]["count"]) for e in log] == [
        ("user:chen.steward", "registry.persons", 1)
    ]


@pytest.mark.usefixtures("loaded")
def test_legal_representatives_are_masked_for_handlers(
    client: TestClient, context: AppContext, handler: dict[str, str], steward: dict[str, str]
) -> None:
    masked = client.get("/api/registries/entities", headers=handler).json()
    assert [e["legal_representative"] for e in masked["items"]] == ["王**", None]
    assert masked["items"][0]["credit_code"] == "91310115MA1K3BTP2B"  # public, never masked
    assert masked["items"][1]["entity_type"] == "企业"
    assert masked["items"][1]["status_en"] == "deregistered"
    assert unmasked_reads(context) == []
    shown = client.get("/api/registries/entities", headers=steward).json()
    assert shown["items"][0]["legal_representative"] == "王小明"
    [entry] = unmasked_reads(context)
    assert entry.target == "registry.entities.legal_representative"
    assert entry.detail["records"] == [f"entity:{shown['items'][0]['id']}"]  # only rows with one


@pytest.mark.usefixtures("loaded")
def test_search_filters_and_paging(client: TestClient, handler: dict[str, str]) -> None:
    def names(**params: Any) -> list[str]:
        reply = client.get("/api/registries/persons", params=params, headers=handler)
        assert reply.status_code == 200, reply.text
        return [p["name"] for p in reply.json()["items"]]

    assert names(name="张") == ["张*", "张**"]  # 张三, 张三丰 - not 李张
    assert names(name="欧阳") == ["欧***"]
    assert names(name=" 张三丰 ") == ["张**"]
    assert names(id_number="36042619910101007１") == ["张**"]  # full-width digit folded
    assert names(district="310101") == ["张*", "欧***"]
    assert names(community="310104003002") == ["张**"]
    assert names(district="310101", name="欧") == ["欧***"]
    first = client.get("/api/registries/persons", params={"limit": 2}, headers=handler).json()
    assert len(first["items"]) == 2
    assert first["next_after_id"] == first["items"][1]["id"]
    rest = client.get(
        "/api/registries/persons", params={"after_id": first["next_after_id"]}, headers=handler
    ).json()
    assert len(rest["items"]) == 2
    assert rest["next_after_id"] is None
    entities = client.get(
        "/api/registries/entities", params={"name": "上海浦江", "status": "存续"}, headers=handler
    ).json()["items"]
    assert [e["name"] for e in entities] == ["上海浦江科技有限公司"]
    deregistered = client.get(
        "/api/registries/entities", params={"status": "deregistered"}, headers=handler
    ).json()["items"]
    assert [e["status"] for e in deregistered] == ["注销"]
    by_code = client.get(
        "/api/registries/entities", params={"credit_code": "91350100m000100y43"}, headers=handler
    ).json()["items"]
    assert [e["name"] for e in by_code] == ["福州示例公司"]


def test_addresses_search_and_stats(
    client: TestClient, steward: dict[str, str], handler: dict[str, str]
) -> None:
    rows = [
        ["标准地址", "建筑物名称", "经度", "纬度", "单元网格代码"],
        ["上海市黄浦区福州路1号", "一号楼", "121.48", "31.23", "310101002001003"],
        ["上海市黄浦区福州路12号", "", "121.48", "31.23", "310101002001004"],
        ["上海市徐汇区漕溪路1号", "", "121.43", "31.18", "310104003002001"],
    ]
    assert upload(client, steward, "addresses", csv_bytes(rows)).status_code == 200
    found = client.get(
        "/api/registries/addresses", params={"q": "上海市黄浦区福州路1"}, headers=handler
    ).json()["items"]
    assert [a["address"] for a in found] == ["上海市黄浦区福州路1号", "上海市黄浦区福州路12号"]
    in_grid = client.get(
        "/api/registries/addresses", params={"grid": "310101002001003"}, headers=handler
    ).json()["items"]
    assert [a["building_name"] for a in in_grid] == ["一号楼"]
    one = client.get(f"/api/registries/addresses/{found[0]['id']}", headers=handler).json()
    assert one["community_code"] == "310101002001"
    stats = client.get("/api/registries/stats", headers=handler).json()
    assert stats["addresses"] == 3
    huangpu = next(d for d in stats["by_district"] if d["district_code"] == "310101")
    assert (huangpu["name"], huangpu["addresses"]) == ("黄浦区", 2)


def test_template(client: TestClient, handler: dict[str, str]) -> None:
    reply = client.get("/api/registries/persons/template", headers=handler)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/csv")
    assert reply.content.decode("utf-8-sig").startswith("身份证号,姓名,性别,出生日期")


# -- errors -------------------------------------------------------------------------------------


def _problem(reply: Any, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = reply.json()
    assert body["status"] == status
    assert body["detail"]
    return body


def test_unauthenticated_calls_get_401(client: TestClient) -> None:
    _problem(client.get("/api/registries/persons"), 401)
    _problem(client.get("/api/registries/persons/1"), 401)
    _problem(upload(client, {}, "persons", csv_bytes(PERSONS)), 401)


def test_callers_without_the_permission_get_403(
    client: TestClient, handler: dict[str, str], login: Any
) -> None:
    body = _problem(upload(client, handler, "persons", csv_bytes(PERSONS)), 403)
    assert "registry.write" in body["detail"]
    citizen = login("wang.citizen", "citizen")
    _problem(client.get("/api/registries/persons", headers=citizen), 403)
    _problem(client.get("/api/registries/stats", headers=citizen), 403)


def test_bad_calls_get_422(client: TestClient, steward: dict[str, str]) -> None:
    bad_district = _problem(
        client.get("/api/registries/persons", params={"district": "31010"}, headers=steward), 422
    )
    assert bad_district["errors"][0]["field"] == "district"
    bad_id = _problem(
        client.get(
            "/api/registries/persons", params={"id_number": "360426199101010072"}, headers=steward
        ),
        422,
    )
    assert bad_id["errors"][0]["field"] == "id_number"
    assert "校验码" in bad_id["detail"]
    _problem(
        client.get("/api/registries/entities", params={"credit_code": "X"}, headers=steward), 422
    )
    _problem(client.get("/api/registries/persons", params={"limit": 0}, headers=steward), 422)
    bad_status = _problem(
        client.get("/api/registries/entities", params={"status": "zombie"}, headers=steward), 422
    )
    assert "存续" in bad_status["detail"]
    _problem(client.post("/api/registries/persons/import", headers=steward), 422)  # no file
    _problem(upload(client, steward, "people", csv_bytes(PERSONS)), 422)  # no such registry
    no_header = _problem(
        upload(client, steward, "persons", csv_bytes([["a", "b"], ["1", "2"]])), 422
    )
    assert no_header["type"] == "/problems/import-file-invalid"
    assert "身份证号" in no_header["detail"]


def test_unsupported_files_get_415_and_unknown_ids_404(
    client: TestClient, steward: dict[str, str]
) -> None:
    legacy = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64
    body = _problem(upload(client, steward, "persons", legacy), 415)
    assert ".xlsx" in body["detail"]
    _problem(upload(client, steward, "persons", b"\x00\x01\x02binary"), 415)
    missing = _problem(client.get("/api/registries/persons/999999", headers=steward), 404)
    assert "999999" in missing["detail"]
    _problem(client.get("/api/registries/entities/999999", headers=steward), 404)
    _problem(client.get("/api/registries/addresses/999999", headers=steward), 404)


def test_upload_locates_points_in_the_city(
    client: TestClient, toy: AppContext, steward: dict[str, str]
) -> None:
    from tests.city.conftest import grid_code, xy

    inside, outside = xy(2.5, 4.5), xy(30, 30)
    persons = [
        ["姓名", "身份证号", "居住地经度", "居住地纬度"],
        ["张三", "11010519491231002X", f"{inside[0]}", f"{inside[1]}"],
        ["李四", "360426199101010071", f"{outside[0]}", f"{outside[1]}"],
    ]
    rejected = upload(client, steward, "persons", csv_bytes(persons))
    assert rejected.status_code == 422
    assert [(e["row"], e["code"]) for e in rejected.json()["errors"]] == [(3, "outside_city")]
    reply = upload(client, steward, "persons", csv_bytes(persons[:2]))
    assert reply.json()["located"] == 1
    [person] = client.get("/api/registries/persons", headers=steward).json()["items"]
    assert (person["district_code"], person["community_code"]) == ("310101", "310101001002")
    point = xy(9.5, 0.5)
    addresses = [
        ["标准地址", "经度", "纬度"],
        ["上海市浦东新区某路1号", f"{point[0]}", f"{point[1]}"],
    ]
    assert upload(client, steward, "addresses", csv_bytes(addresses)).json()["located"] == 1
    [address] = client.get("/api/registries/addresses", headers=steward).json()["items"]
    assert address["grid_code"] == grid_code(9, 0)
    assert address["community_code"] == "310115001001"
