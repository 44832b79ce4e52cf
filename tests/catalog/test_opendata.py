"""Opening datasets safely: rules for personal columns, k-anonymity, conditional access."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.catalog.conftest import PEOPLE_ROWS, bus_resource, csv_bytes, people_resource


def _search(client: TestClient, resource_id: str, headers: dict[str, str] | None = None) -> Any:
    return client.post(
        "/api/3/action/datastore_search", json={"resource_id": resource_id}, headers=headers or {}
    )


def test_open_masks_generalises_and_suppresses(
    client: TestClient, create: Callable[..., Any], upload: Callable[..., Any], steward: Any
) -> None:
    create(people_resource(open_type="无条件开放", open_conditions=""))
    upload("clinic-visits", "WJ", csv_bytes(PEOPLE_ROWS))
    reply = client.post("/api/catalog/resources/clinic-visits/open", headers=steward("WJ"))
    assert reply.status_code == 200, reply.text
    opened = reply.json()
    assert opened["columns"] == {
        "身份证号": "string",
        "区": "string",
        "年龄": "string",
        "就诊次数": "integer",
    }
    assert opened["k"] == 6  # (黄浦区, 30-39) and (徐汇区, 40-49), six people each
    records = _search(client, opened["published_id"]).json()["result"]["records"]
    assert "姓名" not in records[0]
    assert records[0]["身份证号"].startswith("310101")
    assert records[0]["身份证号"].endswith("01X")
    assert "*" in records[0]["身份证号"]
    assert records[0]["年龄"] == "30-39"


def test_k_anonymity_blocks_and_names_the_combination(
    client: TestClient, create: Callable[..., Any], upload: Callable[..., Any], steward: Any
) -> None:
    items = people_resource()["items"]
    items[3]["publish_rule"] = "keep"  # exact ages make small groups
    create(people_resource(items=items, open_type="无条件开放", open_conditions="", min_k=5))
    upload("clinic-visits", "WJ", csv_bytes(PEOPLE_ROWS))
    reply = client.post("/api/catalog/resources/clinic-visits/open", headers=steward("WJ"))
    assert reply.status_code == 409
    detail = reply.json()["detail"]
    assert "区=徐汇区, 年龄=40" in detail
    assert "只有 1 条" in detail
    assert "k=5" in detail
    resource = client.get("/api/catalog/resources/clinic-visits", headers=steward("WJ")).json()
    assert resource["opened"] is False  # nothing published
    listed = client.get("/api/3/action/package_list").json()["result"]
    assert listed == []


def test_k_anonymity_guards_later_uploads(
    client: TestClient, create: Callable[..., Any], upload: Callable[..., Any], steward: Any
) -> None:
    create(people_resource(open_type="无条件开放", open_conditions="", min_k=5))
    upload("clinic-visits", "WJ", csv_bytes(PEOPLE_ROWS))
    published = client.post(
        "/api/catalog/resources/clinic-visits/open", headers=steward("WJ")
    ).json()
    lonely = [*PEOPLE_ROWS, ["王五", "310115199001010011", "浦东新区", 70, 1]]
    reply = upload("clinic-visits", "WJ", csv_bytes(lonely))
    assert reply.status_code == 409
    assert "浦东新区" in reply.json()["detail"]
    # The refused upload changed nothing: neither the source nor the published copy.
    data = client.get("/api/catalog/resources/clinic-visits/data", headers=steward("WJ")).json()
    assert data["total"] == 12
    assert _search(client, published["published_id"]).json()["result"]["total"] == 12


def test_open_refusals(
    client: TestClient,
    create: Callable[..., Any],
    upload: Callable[..., Any],
    steward: Any,
    login: Any,
) -> None:
    create(bus_resource())
    reply = client.post("/api/catalog/resources/bus-arrivals/open", headers=steward("JT"))
    assert reply.status_code == 409
    assert "没有数据" in reply.json()["detail"]
    closed = people_resource(name="closed", code="305002001/000005", open_type="非开放")
    create(closed)
    assert (
        client.post("/api/catalog/resources/closed/open", headers=steward("WJ")).status_code == 409
    )
    assert (
        client.post("/api/catalog/resources/bus-arrivals/open", headers=steward("WJ")).status_code
        == 403
    )
    reader = login("reader1", "operator")
    assert (
        client.post("/api/catalog/resources/bus-arrivals/open", headers=reader).status_code == 403
    )
    assert (
        client.delete("/api/catalog/resources/bus-arrivals/open", headers=steward("JT")).status_code
        == 409
    )


def test_conditional_dataset_application_flow(
    client: TestClient,
    create: Callable[..., Any],
    upload: Callable[..., Any],
    steward: Any,
    login: Any,
) -> None:
    create(people_resource())
    upload("clinic-visits", "WJ", csv_bytes(PEOPLE_ROWS))
    published = client.post(
        "/api/catalog/resources/clinic-visits/open", headers=steward("WJ")
    ).json()
    resource_id = published["published_id"]
    # Metadata is public, rows need a key.
    assert client.get("/api/3/action/package_show", params={"id": "clinic-visits"}).json()[
        "success"
    ]
    refused = _search(client, resource_id)
    assert refused.status_code == 403
    assert refused.json()["error"]["__type"] == "Authorization Error"
    citizen = login("researcher", "citizen")
    body = {
        "resource": "clinic-visits",
        "organisation": "复旦大学公共卫生学院",
        "contact": "researcher@example.edu.cn",
        "purpose": "研究社区门诊利用率的区际差异",
    }
    assert (
        client.post(
            "/api/opendata/applications", json={**body, "purpose": ""}, headers=citizen
        ).status_code
        == 422
    )
    application = client.post("/api/opendata/applications", json=body, headers=citizen)
    assert application.status_code == 201, application.text
    app_id = application.json()["id"]
    base = f"/api/opendata/applications/{app_id}"
    # The applicant cannot review, nor sign before review.
    assert client.post(f"{base}/review", json={"approve": True}, headers=citizen).status_code == 403
    assert (
        client.post(f"{base}/agreement", json={"accept": True}, headers=citizen).status_code == 409
    )
    assert (
        client.post(f"{base}/review", json={"approve": False}, headers=steward("WJ")).status_code
        == 422
    )
    reviewed = client.post(
        f"{base}/review", json={"approve": True, "rate_per_minute": 3}, headers=steward("WJ")
    )
    assert reviewed.status_code == 200
    assert "数据使用协议" in reviewed.json()["agreement"]
    other = login("someone", "citizen")
    assert client.post(f"{base}/agreement", json={"accept": True}, headers=other).status_code == 404
    assert (
        client.post(f"{base}/agreement", json={"accept": False}, headers=citizen).status_code == 422
    )
    signed = client.post(f"{base}/agreement", json={"accept": True}, headers=citizen)
    assert signed.status_code == 200
    key = signed.json()["api_key"]
    assert key
    assert signed.json()["status"] == "active"
    assert client.get(base, headers=citizen).json()["api_key"] is None  # shown once
    # The key reads this dataset (ckanapi sends it as Authorization), within its rate limit.
    for _ in range(3):
        assert _search(client, resource_id, {"Authorization": key}).status_code == 200
    limited = _search(client, resource_id, {"Authorization": key})
    assert limited.status_code == 429
    # It reaches nothing else, and revoking ends it.
    create(people_resource(name="other-visits", code="305002001/000007"))
    upload("other-visits", "WJ", csv_bytes(PEOPLE_ROWS))
    other_id = client.post(
        "/api/catalog/resources/other-visits/open", headers=steward("WJ")
    ).json()["published_id"]
    assert _search(client, other_id, {"X-API-Key": key}).status_code == 403
    assert client.post(f"{base}/revoke", headers=steward("WJ")).status_code == 200
    assert _search(client, resource_id, {"X-CKAN-API-Key": key}).status_code == 403


def test_conditional_application_refused(
    client: TestClient,
    create: Callable[..., Any],
    upload: Callable[..., Any],
    steward: Any,
    login: Any,
) -> None:
    create(people_resource())
    upload("clinic-visits", "WJ", csv_bytes(PEOPLE_ROWS))
    client.post("/api/catalog/resources/clinic-visits/open", headers=steward("WJ"))
    citizen = login("researcher", "citizen")
    body = {
        "resource": "clinic-visits",
        "organisation": "某公司",
        "contact": "a@b.cn",
        "purpose": "精准营销推送",
    }
    app_id = client.post("/api/opendata/applications", json=body, headers=citizen).json()["id"]
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    base = f"/api/opendata/applications/{app_id}"
    assert (
        client.post(
            f"{base}/review", json={"approve": True, "expires_at": past}, headers=steward("WJ")
        ).status_code
        == 422
    )
    reply = client.post(
        f"{base}/review",
        json={"approve": False, "reason": "用途不符合开放条件"},
        headers=steward("WJ"),
    )
    assert reply.json()["status"] == "refused"
    assert (
        client.post(f"{base}/agreement", json={"accept": True}, headers=citizen).status_code == 409
    )
    # Unconditionally open or closed datasets take no applications.
    create(bus_resource())
    reply = client.post(
        "/api/opendata/applications", json={**body, "resource": "bus-arrivals"}, headers=citizen
    )
    assert reply.status_code == 404  # not opened: it does not exist for the public


@pytest.mark.parametrize("rule", ["mask", "generalise"])
def test_rules_change_the_published_type(rule: str) -> None:
    from pujiang.catalog.publishing import generalise_value, mask_value
    from pujiang.catalog.vocab import ItemType

    if rule == "mask":
        assert mask_value("13812345678") == "138****5678"
        assert mask_value("张三丰") == "张**"
    else:
        assert generalise_value(ItemType.INTEGER, 37) == "30-39"
        assert generalise_value(ItemType.STRING, "310101198001010011") == "310101"
