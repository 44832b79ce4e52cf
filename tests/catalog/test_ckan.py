"""The CKAN Action API, driven by the unchanged ckanapi client over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from ckanapi import NotAuthorized, NotFound, RemoteCKAN, ValidationError
from fastapi.testclient import TestClient
from sqlalchemy import select

from pujiang.app import create_app
from pujiang.catalog import sqlguard
from pujiang.platform.deps import AppContext
from pujiang.platform.models import AuditEntry
from pujiang.settings import Settings
from tests.catalog.conftest import PEOPLE_ROWS, bus_resource, csv_bytes, people_resource

BUS_ROWS = [
    ["线路名称", "站点", "预计到站", "距离米"],
    ["71路", "延安东路外滩", "2024-05-01 08:00:00", 300],
    ["71路", "西藏中路", "2024-05-01 08:05:00", 1200],
    ["49路", "人民广场", "2024-05-01 08:02:00", 150],
    ["49路", "汉口路", "2024-05-01 08:07:00", 800],
]


@pytest.fixture
def server(settings: Settings, context: AppContext) -> Iterator[str]:
    """The app served by uvicorn on a free local port, in a thread."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        create_app(settings, context), host="127.0.0.1", port=port, log_config=None, lifespan="off"
    )
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert instance.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def portal(
    client: TestClient,
    create: Callable[..., Any],
    upload: Callable[..., Any],
    steward: Callable[[str], dict[str, str]],
) -> dict[str, str]:
    """Two open datasets (one conditional) and one registered but not opened."""
    create(bus_resource())
    upload("bus-arrivals", "JT", csv_bytes(BUS_ROWS))
    bus = client.post("/api/catalog/resources/bus-arrivals/open", headers=steward("JT")).json()
    create(people_resource())
    upload("clinic-visits", "WJ", csv_bytes(PEOPLE_ROWS))
    clinic = client.post("/api/catalog/resources/clinic-visits/open", headers=steward("WJ")).json()
    create(
        bus_resource(name="metro-flows", code="305001002/000001", title="地铁客流", tags=["地铁"])
    )
    return {"bus": bus["published_id"], "clinic": clinic["published_id"]}


@pytest.mark.parametrize("get_only", [False, True])
def test_ckanapi_lists_shows_and_searches(
    server: str, portal: dict[str, str], get_only: bool
) -> None:
    with RemoteCKAN(server, get_only=get_only) as ckan:
        assert ckan.action.status_show()["ckan_version"].startswith("2.")
        assert ckan.action.package_list() == ["bus-arrivals", "clinic-visits"]
        package = ckan.action.package_show(id="bus-arrivals")
        assert package["title"] == "公交线路实时到站"
        assert package["organization"]["name"] == "jt"
        assert package["resources"][0]["id"] == portal["bus"]
        assert {"key": "share_type", "value": "无条件共享"} in package["extras"]
        assert ckan.action.package_show(id=package["id"])["name"] == "bus-arrivals"
        with pytest.raises(NotFound):
            ckan.action.package_show(id="metro-flows")  # registered, not opened
        found = ckan.action.package_search(
            q="公交", rows=10, **{"facet.field": ["organization", "res_format", "groups"]}
        )
        assert found["count"] == 1
        assert found["results"][0]["name"] == "bus-arrivals"
        assert found["search_facets"]["organization"]["items"][0]["name"] == "jt"
        everything = ckan.action.package_search(
            fq="organization:wj", **{"facet.field": ["open_type"]}
        )
        assert [p["name"] for p in everything["results"]] == ["clinic-visits"]
        assert everything["facets"]["open_type"] == {"有条件开放": 1}
        paged = ckan.action.package_search(rows=1, start=1, sort="name asc")
        assert paged["count"] == 2
        assert paged["results"][0]["name"] == "clinic-visits"
        with pytest.raises(ValidationError):
            ckan.action.package_search(rows=5000)
        assert "jt" in ckan.action.organization_list()
        org = ckan.action.organization_show(id="jt", include_datasets=True)
        assert org["package_count"] == 1
        assert org["packages"][0]["name"] == "bus-arrivals"
        with pytest.raises(NotFound):
            ckan.action.organization_show(id="nowhere")
        assert "交通出行" in ckan.action.group_list()
        assert ckan.action.group_show(id="交通出行")["package_count"] == 1
        assert ckan.action.tag_list() == ["bus", "公交", "门诊"]
        resource = ckan.action.resource_show(id=portal["bus"])
        assert resource["datastore_active"] is True


def test_ckanapi_datastore(server: str, portal: dict[str, str]) -> None:
    with RemoteCKAN(server) as ckan:
        page = ckan.action.datastore_search(
            resource_id=portal["bus"], filters={"线路名称": "71路"}, sort="距离米 desc"
        )
        assert page["total"] == 2
        assert [r["站点"] for r in page["records"]] == ["西藏中路", "延安东路外滩"]
        assert {"id": "距离米", "type": "int"} in page["fields"]
        page = ckan.action.datastore_search(
            resource_id=portal["bus"], q="人民", fields=["站点"], limit=1, offset=0
        )
        assert page["records"] == [{"站点": "人民广场"}]
        distinct = ckan.action.datastore_search(
            resource_id=portal["bus"], fields=["线路名称"], distinct=True, sort="线路名称"
        )
        assert [r["线路名称"] for r in distinct["records"]] == ["49路", "71路"]
        with pytest.raises(ValidationError):
            ckan.action.datastore_search(resource_id=portal["bus"], sort="颜色 asc")
        with pytest.raises(NotFound):
            ckan.action.datastore_search(resource_id="no-such-table")
        with pytest.raises(NotAuthorized):
            ckan.action.datastore_search(resource_id=portal["clinic"])
        table = portal["bus"]
        rows = ckan.action.datastore_search_sql(
            sql=f'SELECT "线路名称", COUNT(*) AS n FROM "{table}" GROUP BY "线路名称" ORDER BY 1'
        )
        assert rows["records"] == [{"线路名称": "49路", "n": 2}, {"线路名称": "71路", "n": 2}]
        for bad in (
            f'DELETE FROM "{table}"',
            f'SELECT * FROM "{table}"; DROP TABLE "{table}"',
            "SELECT * FROM principals",
            f'SELECT * FROM "{portal["clinic"]}"',  # conditional: only through its key
            f'SELECT * FROM "{table}" WHERE 1 IN (SELECT id FROM api_keys)',
            "SELECT name FROM sqlite_master",
            "SELECT * FROM pg_catalog.pg_tables",
            f'SELECT * FROM "{table}" -- comment',
            f'WITH x AS (SELECT * FROM "{table}") INSERT INTO "{table}" SELECT * FROM x',
            f"SELECT load_extension('x') FROM \"{table}\"",
        ):
            with pytest.raises(ValidationError):
                ckan.action.datastore_search_sql(sql=bad)
        assert ckan.action.datastore_search(resource_id=table)["total"] == 4  # nothing changed


def test_envelope_errors_and_no_audit_noise(
    client: TestClient, portal: dict[str, str], context: AppContext
) -> None:
    reply = client.get("/api/action/package_show", params={"id": "nope"})
    assert reply.status_code == 404
    body = reply.json()
    assert body["success"] is False
    assert body["error"]["__type"] == "Not Found Error"
    assert body["help"].endswith("name=package_show")
    unknown = client.post("/api/3/action/package_destroy", json={"id": "bus-arrivals"})
    assert unknown.status_code == 400
    assert unknown.json()["success"] is False
    bad_json = client.post(
        "/api/3/action/package_show", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    missing = client.post("/api/3/action/package_show", json={})
    assert missing.status_code == 409
    assert missing.json()["error"]["id"]
    bad_rows = client.get("/api/3/action/package_search", params={"rows": "many"})
    assert bad_rows.status_code == 409
    assert "rows" in bad_rows.json()["error"]
    bad_fq = client.get("/api/3/action/package_search", params={"fq": "secret:1"})
    assert bad_fq.json()["error"]["__type"] == "Search Query Error"
    ok = client.get(
        "/api/3/action/datastore_search",
        params={"resource_id": portal["bus"], "filters": '{"线路名称": "49路"}'},
    )
    assert ok.json()["result"]["total"] == 2
    with context.db.session() as session:
        actions = set(session.scalars(select(AuditEntry.action)))
    assert not any("action" in a for a in actions)  # CKAN reads are not audited as changes


def test_sql_guard_time_limit_and_read_only(context: AppContext, portal: dict[str, str]) -> None:
    table = portal["bus"]
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
        f'SELECT COUNT(*) FROM n, "{table}"'
    )
    with pytest.raises(sqlguard.SqlRefused, match=r"limit|时限"):
        sqlguard.run(context.db, endless, {table}, seconds=0.3)
    result = sqlguard.run(context.db, f'SELECT * FROM "{table}"', {table}, limit=2)
    assert len(result.records) == 2
    assert result.truncated
    with pytest.raises(sqlguard.SqlRefused):
        sqlguard.check("SELECT 1 FROM a, principals", {"a"})
    with pytest.raises(sqlguard.SqlRefused):
        sqlguard.check("SELECT (SELECT 1 FROM principals) FROM a", {"a"})
    with pytest.raises(sqlguard.SqlRefused):
        sqlguard.check("SELECT * FROM a JOIN main.api_keys k ON 1=1", {"a", "main"})
    assert sqlguard.check(
        'WITH t AS (SELECT * FROM "a") SELECT x FROM t JOIN a ON t.x = a.x', {"a"}
    ) == (["a", "a"], {"t"})
    with pytest.raises(sqlguard.SqlRefused):
        sqlguard.check('WITH "Principals" AS (SELECT 1) SELECT * FROM "Principals"', {"a"})
