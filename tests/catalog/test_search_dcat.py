"""Chinese search with facets, DCAT-AP export read back by rdflib, the quality report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from rdflib import Graph, Literal, URIRef
from rdflib import namespace as ns

from pujiang.catalog.search import terms_of
from tests.catalog.conftest import BUS_ITEMS, bus_resource, csv_bytes, people_resource


def _catalog(create: Callable[..., Any]) -> None:
    create(bus_resource())
    create(
        bus_resource(
            name="bus-routes",
            code="305001001/000002",
            title="公交线路走向",
            summary="Bus route geometry 公交线路的走向与站点",
            format="电子表格",
            open_type="非开放",
            share_type="有条件共享",
            share_conditions="内部使用",
            share_basis="规定",
            tags=[],
        )
    )
    create(
        bus_resource(
            name="river-quality",
            code="305003001/000001",
            title="河道水质监测",
            summary="主要河道断面的水质月报",
            department_code="SW",
            theme="生态环保",
            update_cycle="月",
            tags=["水质"],
            items=[{"name": "断面", "type": "string"}, {"name": "溶解氧", "type": "number"}],
        )
    )
    create(people_resource())


def test_terms_are_bigrams_and_words() -> None:
    assert terms_of("公交线路GPS数据") == {"公交", "交线", "线路", "gps", "数据"}


def test_chinese_and_mixed_search_with_facets(
    client: TestClient, create: Callable[..., Any], login: Any
) -> None:
    _catalog(create)
    reader = login("reader1", "operator")

    def search(**params: Any) -> Any:
        reply = client.get("/api/catalog/resources", params=params, headers=reader)
        assert reply.status_code == 200, reply.text
        return reply.json()

    found = search(q="公交")
    assert [r["name"] for r in found["items"]] == ["bus-arrivals", "bus-routes"]
    assert {f["value"]: f["count"] for f in found["facets"]["format"]} == {
        "服务接口": 1,
        "电子表格": 1,
    }
    assert search(q="公交 GPS")["total"] == 1  # mixed: both terms needed
    assert search(q="bus route")["items"][0]["name"] == "bus-routes"
    assert search(q="水质")["items"][0]["name"] == "river-quality"
    assert search(q="水")["items"][0]["name"] == "river-quality"  # one character: substring
    assert search(q="地铁")["total"] == 0
    assert search(q="公交", open_type="非开放")["total"] == 1
    filtered = search(department="SW")
    assert filtered["total"] == 1
    departments = {f["value"]: f["count"] for f in filtered["facets"]["department"]}
    assert departments == {"JT": 2, "SW": 1, "WJ": 1}  # a facet ignores its own filter
    assert search(theme="健康保障")["items"][0]["name"] == "clinic-visits"
    assert search(tag="公交")["total"] == 1
    assert search(sort="title", limit=1)["items"][0]["title"] == "公交线路实时到站"
    bad = client.get("/api/catalog/resources", params={"format": "纸质"}, headers=reader)
    assert bad.status_code == 422
    assert "format" in bad.text
    assert (
        client.get("/api/catalog/resources", params={"limit": 5000}, headers=reader).status_code
        == 422
    )
    assert client.get("/api/catalog/resources").status_code == 401


def test_search_follows_changes(
    client: TestClient, create: Callable[..., Any], steward: Any
) -> None:
    create(bus_resource())
    changed = bus_resource(title="轨道交通客流", summary="地铁客流", tags=[])
    changed["items"][0]["description"] = "线路"
    client.put("/api/catalog/resources/bus-arrivals", json=changed, headers=steward("JT"))
    found = client.get("/api/catalog/resources", params={"q": "公交"}, headers=steward("JT")).json()
    assert found["total"] == 0
    found = client.get("/api/catalog/resources", params={"q": "客流"}, headers=steward("JT")).json()
    assert found["total"] == 1


def test_dcat_round_trips_through_rdflib(
    client: TestClient,
    create: Callable[..., Any],
    upload: Callable[..., Any],
    steward: Any,
) -> None:
    _catalog(create)
    rows = [[i["name"] for i in BUS_ITEMS], ["71路", "外滩", "2024-05-01 08:00", 5]]
    upload("bus-arrivals", "JT", csv_bytes(rows))
    client.post("/api/catalog/resources/bus-arrivals/open", headers=steward("JT"))
    headers = steward("JT")
    whole = client.get("/api/catalog/dcat.ttl", headers=headers)
    assert whole.status_code == 200
    assert whole.headers["content-type"].startswith("text/turtle")
    graph = Graph().parse(data=whole.text, format="turtle")
    datasets = set(graph.subjects(ns.RDF.type, ns.DCAT.Dataset))
    assert len(datasets) == 4
    assert len(set(graph.subjects(ns.RDF.type, ns.DCAT.Catalog))) == 1
    jsonld = client.get("/api/catalog/dcat.jsonld", headers=headers)
    again = Graph().parse(data=jsonld.text, format="json-ld")
    assert len(set(again.subjects(ns.RDF.type, ns.DCAT.Dataset))) == 4
    assert len(again) == len(graph)
    one = client.get("/api/catalog/resources/bus-arrivals/dcat.jsonld", headers=headers)
    single = Graph().parse(data=one.text, format="json-ld")
    subject = URIRef("http://testserver/api/catalog/resources/bus-arrivals")
    assert (subject, ns.DCTERMS.title, Literal("公交线路实时到站", lang="zh")) in single
    assert (subject, ns.DCTERMS.identifier, Literal("305001001/000001")) in single
    distributions = list(single.objects(subject, ns.DCAT.distribution))
    assert len(distributions) == 1
    assert list(single.objects(distributions[0], ns.DCAT.accessURL))
    public = client.get("/api/opendata/dcat.ttl")
    opened = Graph().parse(data=public.text, format="turtle")
    assert len(set(opened.subjects(ns.RDF.type, ns.DCAT.Dataset))) == 1  # only what is open
    assert client.get("/api/opendata/datasets/bus-routes/dcat.ttl").status_code == 404
    assert client.get("/api/opendata/datasets/bus-arrivals/dcat.xml").status_code == 422


def test_quality_report(
    client: TestClient, create: Callable[..., Any], upload: Callable[..., Any], steward: Any
) -> None:
    _catalog(create)
    rows = [[i["name"] for i in BUS_ITEMS], ["71路", "外滩", "", 5], ["71路", "外滩", "", 5]]
    upload("bus-arrivals", "JT", csv_bytes(rows))
    report = client.get("/api/catalog/quality", headers=steward("JT")).json()
    by_name = {r["resource"]: r for r in report["resources"]}
    bus = by_name["bus-arrivals"]
    assert bus["completeness"] == 0.75
    assert bus["uniqueness"] == 0.5
    assert bus["late"] is False
    assert by_name["river-quality"]["late"] is True  # never loaded
    assert {r["resource"] for r in report["late"]} == {
        "bus-routes",
        "river-quality",
        "clinic-visits",
    }
    jt = next(d for d in report["departments"] if d["department_code"] == "JT")
    assert jt["resources"] == 2
    assert jt["late"] == 1
