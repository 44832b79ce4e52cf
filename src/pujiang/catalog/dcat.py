"""DCAT-AP adapter: the catalog's metadata as RDF (JSON-LD or Turtle), per dataset or whole.

Frequencies and access rights use the EU Publications Office vocabularies DCAT-AP names;
texts are tagged @zh. The catalog's own terms with no DCAT-AP property (resource code,
share type) use `dct:identifier` and an `adms:` / `pj:` property.
"""

from __future__ import annotations

from collections.abc import Iterable

from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, RDF, SKOS, XSD

from pujiang.catalog.models import CatalogResource
from pujiang.catalog.vocab import OpenType, UpdateCycle

EU_FREQ = Namespace("http://publications.europa.eu/resource/authority/frequency/")
EU_ACCESS = Namespace("http://publications.europa.eu/resource/authority/access-right/")
EU_TYPE = Namespace("http://publications.europa.eu/resource/authority/file-type/")
ADMS = Namespace("http://www.w3.org/ns/adms#")
PJ = Namespace("https://pujiang.city/ns/catalog#")

FREQUENCY = {
    UpdateCycle.REALTIME: EU_FREQ.UPDATE_CONT,
    UpdateCycle.DAILY: EU_FREQ.DAILY,
    UpdateCycle.WEEKLY: EU_FREQ.WEEKLY,
    UpdateCycle.MONTHLY: EU_FREQ.MONTHLY,
    UpdateCycle.QUARTERLY: EU_FREQ.QUARTERLY,
    UpdateCycle.HALF_YEARLY: EU_FREQ.ANNUAL_2,
    UpdateCycle.YEARLY: EU_FREQ.ANNUAL,
}
ACCESS = {
    OpenType.UNCONDITIONAL: EU_ACCESS.PUBLIC,
    OpenType.CONDITIONAL: EU_ACCESS.RESTRICTED,
    OpenType.NONE: EU_ACCESS.NON_PUBLIC,
}
FORMATS = {"json": "application/json", "ttl": "text/turtle", "jsonld": "application/ld+json"}


def dataset_uri(base: str, resource: CatalogResource) -> URIRef:
    return URIRef(f"{base}/api/catalog/resources/{resource.name}")


def _graph() -> Graph:
    graph = Graph()
    for prefix, namespace in (
        ("dcat", DCAT),
        ("dct", DCTERMS),
        ("foaf", FOAF),
        ("skos", SKOS),
        ("adms", ADMS),
        ("pj", PJ),
    ):
        graph.bind(prefix, namespace)
    return graph


def _add_dataset(graph: Graph, base: str, resource: CatalogResource) -> URIRef:
    uri = dataset_uri(base, resource)
    zh = "zh"
    graph.add((uri, RDF.type, DCAT.Dataset))
    graph.add((uri, DCTERMS.identifier, Literal(resource.code)))
    graph.add((uri, DCTERMS.title, Literal(resource.title, lang=zh)))
    graph.add((uri, DCTERMS.description, Literal(resource.summary, lang=zh)))
    graph.add((uri, DCTERMS.issued, Literal(resource.released_on, datatype=XSD.date)))
    graph.add((uri, DCTERMS.modified, Literal(resource.updated_at, datatype=XSD.dateTime)))
    graph.add((uri, DCTERMS.accrualPeriodicity, FREQUENCY[UpdateCycle(resource.update_cycle)]))
    graph.add((uri, DCTERMS.accessRights, ACCESS[OpenType(resource.open_type)]))
    graph.add((uri, PJ.shareType, Literal(resource.share_type, lang=zh)))
    graph.add((uri, PJ.openType, Literal(resource.open_type, lang=zh)))
    graph.add((uri, ADMS.identifier, Literal(resource.uid)))
    publisher = URIRef(f"{base}/api/departments/{resource.department.code}")
    graph.add((uri, DCTERMS.publisher, publisher))
    graph.add((publisher, RDF.type, FOAF.Agent))
    graph.add((publisher, FOAF.name, Literal(resource.department.name, lang=zh)))
    graph.add((publisher, DCTERMS.identifier, Literal(resource.department.code)))
    theme = URIRef(f"{base}/api/catalog/themes/{resource.theme}")
    graph.add((uri, DCAT.theme, theme))
    graph.add((theme, RDF.type, SKOS.Concept))
    graph.add((theme, SKOS.prefLabel, Literal(resource.theme, lang=zh)))
    for tag in resource.tags:
        graph.add((uri, DCAT.keyword, Literal(tag, lang=zh)))
    if resource.base_registry:
        graph.add((uri, PJ.baseRegistry, Literal(resource.base_registry, lang=zh)))
    for code in resource.related_codes:
        graph.add((uri, DCTERMS.relation, Literal(code)))
    graph.add((uri, DCAT.landingPage, uri))
    if resource.opened_at is not None and resource.published_id:
        distribution = URIRef(f"{base}/api/3/action/resource_show?id={resource.published_id}")
        graph.add((uri, DCAT.distribution, distribution))
        graph.add((distribution, RDF.type, DCAT.Distribution))
        graph.add((distribution, DCTERMS.title, Literal(resource.title, lang=zh)))
        access = f"{base}/api/3/action/datastore_search?resource_id={resource.published_id}"
        graph.add((distribution, DCAT.accessURL, URIRef(access)))
        graph.add(
            (
                distribution,
                DCAT.mediaType,
                URIRef("https://www.iana.org/assignments/media-types/application/json"),
            )
        )
        graph.add((distribution, DCTERMS.format, EU_TYPE.JSON))
        graph.add(
            (
                distribution,
                DCTERMS.license,
                URIRef(f"https://opendefinition.org/licenses/{resource.license_id}/"),
            )
        )
        if resource.data_updated_at:
            graph.add(
                (
                    distribution,
                    DCTERMS.modified,
                    Literal(resource.data_updated_at, datatype=XSD.dateTime),
                )
            )
    for item in resource.items:
        column = BNode()
        graph.add((uri, PJ.dataItem, column))
        graph.add((column, DCTERMS.title, Literal(item["name"], lang=zh)))
        graph.add((column, PJ.itemType, Literal(item["type"])))
        graph.add((column, PJ.personal, Literal(bool(item.get("personal")))))
    return uri


def dataset_graph(base: str, resource: CatalogResource) -> Graph:
    graph = _graph()
    _add_dataset(graph, base, resource)
    return graph


def catalog_graph(base: str, resources: Iterable[CatalogResource], title: str) -> Graph:
    graph = _graph()
    catalog = URIRef(f"{base}/api/catalog")
    graph.add((catalog, RDF.type, DCAT.Catalog))
    graph.add((catalog, DCTERMS.title, Literal(title, lang="zh")))
    graph.add(
        (
            catalog,
            DCTERMS.description,
            Literal("浦江政务数据资源目录 / Pujiang government data catalog", lang="zh"),
        )
    )
    graph.add((catalog, FOAF.homepage, URIRef(f"{base}/")))
    for resource in resources:
        graph.add((catalog, DCAT.dataset, _add_dataset(graph, base, resource)))
    return graph


def serialise(graph: Graph, fmt: str) -> tuple[bytes, str]:
    """(bytes, media type) of the graph as 'ttl' (Turtle) or 'jsonld' (JSON-LD)."""
    if fmt == "ttl":
        return graph.serialize(format="turtle").encode(), "text/turtle; charset=utf-8"
    return graph.serialize(format="json-ld", auto_compact=True).encode(), "application/ld+json"
