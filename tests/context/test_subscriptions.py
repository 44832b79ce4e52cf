"""NGSI-LD subscriptions: the CRUD API, every validation error, and the pure matching parts.

Delivery (HTTP, retries, dead endpoints, throttling, expiry, filters) is in
test_subscriptions_delivery.py, MQTT in test_subscriptions_mqtt.py; both import the helpers
defined here (`Receiver`, `api`, `entity`, `changed`).
"""

from __future__ import annotations

import http.server
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from pujiang.app import create_app
from pujiang.context import ngsild_subscriptions, subscriptions
from pujiang.context.jsonld import DEFAULT_VOCAB, NGSI_LD
from pujiang.platform.deps import AppContext
from pujiang.settings import Settings

SUBS = "/ngsi-ld/v1/subscriptions"
AQO = DEFAULT_VOCAB + "AirQualityObserved"
PM25 = DEFAULT_VOCAB + "pm25"
NO2 = DEFAULT_VOCAB + "no2"
LOCATION = NGSI_LD + "location"
BAD_DATA = "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
FAST = subscriptions.DeliveryConfig(
    max_attempts=3,
    backoff_base=0.05,
    backoff_max=0.2,
    timeout=1.0,
    poll_interval=0.05,
    jitter=0.0,
)


# -- helpers shared by the subscription test files ------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


@dataclass
class Receiver:
    """A local HTTP server in a thread recording every POST. `fail_first` answers 500 to that
    many requests first; `hang` never answers (until closed)."""

    fail_first: int = 0
    hang: bool = False
    status: int = 200
    inbox: queue.Queue[Received] = field(default_factory=queue.Queue)
    requests: int = 0
    _release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                receiver.requests += 1
                if receiver.hang:
                    receiver._release.wait(30)
                    self.close_connection = True  # the sender sees the hang up at once
                    return
                if receiver.requests <= receiver.fail_first:
                    self._answer(500)
                    return
                import time

                receiver.inbox.put(
                    Received(self.path, dict(self.headers.items()), orjson.loads(raw), time.time())
                )
                self._answer(receiver.status)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/notify"

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[Received]:
        got = []
        import time

        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                got.append(self.inbox.get(timeout=left))
            except queue.Empty:
                break
        return got

    def quiet(self, seconds: float = 0.4) -> list[Received]:
        """What arrives within `seconds` (to show that nothing does)."""
        return self.wait(1_000_000, seconds)

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def make_receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**options: Any) -> Receiver:
        server = Receiver(**options)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def has_route(routes: list[Any], path: str) -> bool:
    """Whether a route with this path is mounted (routers are kept as a tree)."""
    for route in routes:
        if getattr(route, "path", None) == path:
            return True
        nested = getattr(route, "original_router", None)
        if nested is not None and has_route(nested.routes, path):
            return True
    return False


@pytest.fixture
def api(settings: Settings, context: AppContext) -> Iterator[TestClient]:
    """The app with the subscription routes (mounted here until context/api.py mounts them)."""
    app = create_app(settings, context)
    if not has_route(app.routes, SUBS):
        app.include_router(ngsild_subscriptions.router)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def auth(login: Callable[..., dict[str, str]]) -> dict[str, str]:
    return login("steward", "data_steward")


def fast_runtime(context: AppContext) -> subscriptions.Runtime:
    """The app's subscription runtime, its worker stopped and set to the short test timings
    (whether or not the app lifespan started it)."""
    installed = subscriptions.install(context, FAST)
    installed.dispatcher.stop()
    installed.dispatcher.config = FAST
    return installed


@pytest.fixture
def runtime(context: AppContext) -> Iterator[subscriptions.Runtime]:
    """Matcher on the bus and the delivery worker running, with short timeouts."""
    installed = fast_runtime(context)
    installed.dispatcher.start()
    yield installed
    installed.dispatcher.stop()


def subscription(uri: str, **members: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "AirQualityObserved"}],
        "notification": {"endpoint": {"uri": uri}},
    }
    doc.update(members)
    return doc


def create(api: TestClient, auth: dict[str, str], doc: dict[str, Any], **headers: str) -> str:
    reply = api.post(SUBS, json=doc, headers={**auth, **headers})
    assert reply.status_code == 201, reply.text
    return reply.headers["Location"].rsplit("/", 1)[-1]


def entity(
    entity_id: str = "urn:ngsi-ld:AirQualityObserved:1",
    pm25: float | None = 35,
    lon: float = 121.47,
    lat: float = 31.23,
    **extra: Any,
) -> dict[str, Any]:
    """An entity in the internal form (expanded names, attributes as lists of instances)."""
    doc: dict[str, Any] = {
        "id": entity_id,
        "type": [AQO],
        "createdAt": "2026-11-24T01:00:00.000Z",
        "modifiedAt": "2026-11-24T01:00:00.000Z",
        LOCATION: [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}],
    }
    if pm25 is not None:
        doc[PM25] = [
            {
                "type": "Property",
                "value": pm25,
                "unitCode": "GQ",
                "observedAt": "2026-11-24T01:00:00Z",
            }
        ]
    doc.update(extra)
    return doc


def changed(
    operation: str,
    now: dict[str, Any] | None,
    before: dict[str, Any] | None = None,
    attributes: list[str] | None = None,
    tenant: str = "",
) -> dict[str, Any]:
    subject = now or before or {}
    return {
        "tenant": tenant,
        "id": subject.get("id"),
        "type": subject.get("type"),
        "operation": operation,
        "attributes": attributes if attributes is not None else [PM25],
        "entity": now,
        "previous": before,
        "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }


def publish(context: AppContext, event: dict[str, Any]) -> None:
    context.bus.publish(subscriptions.CHANGED_TOPIC, event)


# -- CRUD -----------------------------------------------------------------------------------------


def test_create_get_list_patch_delete(api: TestClient, auth: dict[str, str]) -> None:
    doc = subscription(
        "http://127.0.0.1:9/notify",
        id="urn:ngsi-ld:Subscription:crud",
        subscriptionName="pm25 watch",
        watchedAttributes=["pm25"],
        q="pm25>50",
        throttling=5,
    )
    reply = api.post(SUBS, json=doc, headers=auth)
    assert reply.status_code == 201, reply.text
    assert reply.headers["Location"] == f"{SUBS}/urn:ngsi-ld:Subscription:crud"

    got = api.get(f"{SUBS}/urn:ngsi-ld:Subscription:crud", headers=auth)
    assert got.status_code == 200
    body = got.json()
    assert body["id"] == "urn:ngsi-ld:Subscription:crud"
    assert body["watchedAttributes"] == ["pm25"]
    assert body["status"] == "active"
    # isActive defaults to true; GET shows it only when it was written (the ETSI suite's
    # subscriptions-031-01 expectation), the other defaults are shown.
    assert "isActive" not in body
    assert body["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]
    assert body["notification"]["format"] == "normalized"
    assert body["notification"]["endpoint"]["accept"] == "application/json"
    assert body["jsonldContext"] == subscriptions.CORE_CONTEXT_URL
    # Nothing sent yet: the status members have no value and are left out (Table 5.2.14-1).
    for member in ("timesSent", "timesFailed", "lastNotification", "lastSuccess", "status"):
        assert member not in body["notification"], member
    assert got.headers["content-type"].startswith("application/json")
    assert "@context" not in body
    as_ld = api.get(
        f"{SUBS}/urn:ngsi-ld:Subscription:crud", headers={**auth, "Accept": "application/ld+json"}
    ).json()
    assert as_ld["@context"] == subscriptions.CORE_CONTEXT_URL

    create(api, auth, subscription("http://127.0.0.1:9/b"))
    create(api, auth, subscription("http://127.0.0.1:9/c"))
    listed = api.get(SUBS, params={"count": "true", "limit": 2}, headers=auth)
    assert listed.status_code == 200
    assert listed.headers["NGSILD-Results-Count"] == "3"
    assert len(listed.json()) == 2
    rest = api.get(SUBS, params={"offset": 2}, headers=auth).json()
    assert len(rest) == 1
    only_count = api.get(SUBS, params={"count": "true", "limit": 0}, headers=auth)
    assert only_count.json() == []
    assert only_count.headers["NGSILD-Results-Count"] == "3"

    patched = api.patch(
        f"{SUBS}/urn:ngsi-ld:Subscription:crud",
        json={
            "isActive": False,
            "notification": {
                "format": "keyValues",
                "endpoint": {"uri": "http://127.0.0.1:9/notify"},
            },
            "q": None,
        },
        headers=auth,
    )
    assert patched.status_code == 204, patched.text
    body = api.get(f"{SUBS}/urn:ngsi-ld:Subscription:crud", headers=auth).json()
    assert body["status"] == "paused"
    assert body["isActive"] is False
    assert body["notification"]["format"] == "keyValues"
    assert body["notification"]["endpoint"]["uri"] == "http://127.0.0.1:9/notify"
    assert "q" not in body

    assert api.delete(f"{SUBS}/urn:ngsi-ld:Subscription:crud", headers=auth).status_code == 204
    gone = api.get(f"{SUBS}/urn:ngsi-ld:Subscription:crud", headers=auth)
    assert gone.status_code == 404
    assert gone.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"
    assert api.delete(f"{SUBS}/urn:ngsi-ld:Subscription:crud", headers=auth).status_code == 404
    missing = api.patch(f"{SUBS}/urn:ngsi-ld:Subscription:none", json={"q": "a>1"}, headers=auth)
    assert missing.status_code == 404


def test_generated_id_and_duplicate(api: TestClient, auth: dict[str, str]) -> None:
    sub_id = create(api, auth, subscription("http://127.0.0.1:9/n"))
    assert sub_id.startswith("urn:ngsi-ld:Subscription:")
    doc = subscription("http://127.0.0.1:9/n", id=sub_id)
    again = api.post(SUBS, json=doc, headers=auth)
    assert again.status_code == 409
    assert again.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"


def test_jsonld_body_and_link_header_expand_names(api: TestClient, auth: dict[str, str]) -> None:
    context = {"pm": "https://example.org/air#pm25", "Station": "https://example.org/air#Station"}
    doc = subscription("http://127.0.0.1:9/n", watchedAttributes=["pm"])
    doc["entities"] = [{"type": "Station"}]
    doc["@context"] = context
    reply = api.post(
        SUBS, content=orjson.dumps(doc), headers={**auth, "Content-Type": "application/ld+json"}
    )
    assert reply.status_code == 201, reply.text
    sub_id = reply.headers["Location"].rsplit("/", 1)[-1]
    with api.app.state.pujiang.db.session() as session:  # type: ignore[attr-defined]
        row = subscriptions.get(session, "", sub_id)
        assert row is not None
        assert row.compiled["watchedAttributes"] == ["https://example.org/air#pm25"]
        assert row.compiled["entities"][0]["types"] == [["https://example.org/air#Station"]]
        assert row.ld_context == context
        assert "@context" not in row.body
    # Read without an @context, the names are compacted with the core context: full IRIs.
    body = api.get(f"{SUBS}/{sub_id}", headers={**auth, "Accept": "application/ld+json"}).json()
    assert body["@context"] == subscriptions.CORE_CONTEXT_URL
    assert body["entities"] == [{"type": "https://example.org/air#Station"}]
    assert body["watchedAttributes"] == ["https://example.org/air#pm25"]


def test_tenants_are_separate(api: TestClient, auth: dict[str, str]) -> None:
    sub_id = create(api, auth, subscription("http://127.0.0.1:9/n"), **{"NGSILD-Tenant": "t1"})
    assert api.get(f"{SUBS}/{sub_id}", headers=auth).status_code == 404
    assert api.get(f"{SUBS}/{sub_id}", headers={**auth, "NGSILD-Tenant": "t1"}).status_code == 200
    assert api.get(SUBS, headers=auth).json() == []
    bad = api.get(SUBS, headers={**auth, "NGSILD-Tenant": "no+spaces"})
    assert bad.status_code == 400
    assert bad.json()["type"] == BAD_DATA


def test_an_unknown_tenant_is_nonexistent_not_a_missing_subscription(
    api: TestClient, auth: dict[str, str]
) -> None:
    sub_id = create(api, auth, subscription("http://127.0.0.1:9/n"), **{"NGSILD-Tenant": "t1"})
    nowhere = {**auth, "NGSILD-Tenant": "nowhere"}
    fragment = {"throttling": 5}
    for reply in (
        api.get(f"{SUBS}/{sub_id}", headers=nowhere),
        api.patch(f"{SUBS}/{sub_id}", json=fragment, headers=nowhere),
        api.delete(f"{SUBS}/{sub_id}", headers=nowhere),
    ):
        assert reply.status_code == 404, reply.text
        assert reply.json()["type"].endswith("NonexistentTenant")
    # a known tenant without that subscription: ResourceNotFound, and the subscription is kept
    other = create(api, auth, subscription("http://127.0.0.1:9/n"), **{"NGSILD-Tenant": "t2"})
    missing = api.delete(f"{SUBS}/{sub_id}", headers={**auth, "NGSILD-Tenant": "t2"})
    assert missing.json()["type"].endswith("ResourceNotFound")
    assert api.get(f"{SUBS}/{sub_id}", headers={**auth, "NGSILD-Tenant": "t1"}).status_code == 200
    assert other != sub_id


def test_permissions(
    api: TestClient, auth: dict[str, str], login: Callable[..., dict[str, str]]
) -> None:
    assert api.get(SUBS).status_code == 401
    operator = login("operator1", "operator")
    refused = api.post(SUBS, json=subscription("http://127.0.0.1:9/n"), headers=operator)
    assert refused.status_code == 403
    assert api.get(SUBS, headers=operator).status_code == 403


def test_writes_are_audited(api: TestClient, auth: dict[str, str], context: AppContext) -> None:
    from sqlalchemy import select

    from pujiang.platform.models import AuditEntry

    sub_id = create(api, auth, subscription("http://127.0.0.1:9/n"))
    api.patch(f"{SUBS}/{sub_id}", json={"throttling": 3}, headers=auth)
    api.delete(f"{SUBS}/{sub_id}", headers=auth)
    with context.db.session() as session:
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.target == sub_id).order_by(AuditEntry.id)
        ).all()
    assert actions == [
        "context.subscription.create",
        "context.subscription.update",
        "context.subscription.delete",
    ]


# -- every validation error -----------------------------------------------------------------------

HTTP_URI = "http://127.0.0.1:9/n"
PAST = (datetime.now(UTC) - timedelta(days=1)).isoformat()


def _without(member: str) -> dict[str, Any]:
    doc = subscription(HTTP_URI)
    doc.pop(member)
    return doc


def _endpoint(**endpoint: Any) -> dict[str, Any]:
    return subscription(HTTP_URI, notification={"endpoint": {"uri": HTTP_URI, **endpoint}})


def _notification(**notification: Any) -> dict[str, Any]:
    return subscription(HTTP_URI, notification={"endpoint": {"uri": HTTP_URI}, **notification})


INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "type missing": (_without("type"), "type"),
    "type wrong": (subscription(HTTP_URI, type="Subscriptions"), "type"),
    "id not a URI": (subscription(HTTP_URI, id="sub 1"), "id"),
    "no entities nor watchedAttributes": (_without("entities"), "entities"),
    "entities empty": (subscription(HTTP_URI, entities=[]), "entities"),
    "entities not objects": (subscription(HTTP_URI, entities=["x"]), "entities"),
    "entity without type": (subscription(HTTP_URI, entities=[{"id": "urn:a:1"}]), "type"),
    "entity unknown member": (
        subscription(HTTP_URI, entities=[{"type": "A", "name": "x"}]),
        "entities",
    ),
    "entity id not URI": (subscription(HTTP_URI, entities=[{"type": "A", "id": "x"}]), "id"),
    "entity idPattern bad": (
        subscription(HTTP_URI, entities=[{"type": "A", "idPattern": "urn:(x"}]),
        "idPattern",
    ),
    "entity type selection bad": (
        subscription(HTTP_URI, entities=[{"type": "(A;B"}]),
        "parenthesis",
    ),
    "watchedAttributes empty": (subscription(HTTP_URI, watchedAttributes=[]), "watchedAttributes"),
    "watchedAttributes not names": (
        subscription(HTTP_URI, watchedAttributes=[1]),
        "watchedAttributes",
    ),
    "timeInterval with watchedAttributes": (
        subscription(HTTP_URI, timeInterval=10, watchedAttributes=["a"]),
        "timeInterval",
    ),
    "timeInterval with throttling": (
        subscription(HTTP_URI, timeInterval=10, throttling=1),
        "throttling",
    ),
    "timeInterval zero": (subscription(HTTP_URI, timeInterval=0), "timeInterval"),
    "throttling negative": (subscription(HTTP_URI, throttling=-1), "throttling"),
    "throttling text": (subscription(HTTP_URI, throttling="5"), "throttling"),
    "notificationTrigger unknown": (
        subscription(HTTP_URI, notificationTrigger=["entityChanged"]),
        "notificationTrigger",
    ),
    "notificationTrigger empty": (
        subscription(HTTP_URI, notificationTrigger=[]),
        "notificationTrigger",
    ),
    "q syntax": (subscription(HTTP_URI, q="pm25>>"), "q"),
    "q empty": (subscription(HTTP_URI, q=""), "q"),
    "geoQ not object": (subscription(HTTP_URI, geoQ="near"), "geoQ"),
    "geoQ georel missing": (
        subscription(HTTP_URI, geoQ={"geometry": "Point", "coordinates": [121, 31]}),
        "georel",
    ),
    "geoQ geometry unknown": (
        subscription(
            HTTP_URI, geoQ={"geometry": "Circle", "coordinates": [121, 31], "georel": "within"}
        ),
        "geoQ",
    ),
    "geoQ near without distance": (
        subscription(
            HTTP_URI, geoQ={"geometry": "Point", "coordinates": [121, 31], "georel": "near"}
        ),
        "geoQ",
    ),
    "geoQ coordinates text not JSON": (
        subscription(
            HTTP_URI, geoQ={"geometry": "Point", "coordinates": "[121,", "georel": "intersects"}
        ),
        "coordinates",
    ),
    "isActive text": (subscription(HTTP_URI, isActive="yes"), "isActive"),
    "expiresAt past": (subscription(HTTP_URI, expiresAt=PAST), "expiresAt"),
    "expiresAt not a time": (subscription(HTTP_URI, expiresAt="tomorrow"), "expiresAt"),
    "jsonldContext not URI": (subscription(HTTP_URI, jsonldContext="ctx"), "jsonldContext"),
    "subscriptionName not text": (subscription(HTTP_URI, subscriptionName=3), "subscriptionName"),
    "csf unsupported": (subscription(HTTP_URI, csf="a==1"), "csf"),
    "temporalQ unsupported": (subscription(HTTP_URI, temporalQ={}), "temporalQ"),
    "scopeQ not text": (subscription(HTTP_URI, scopeQ=5), "scopeQ must be a string"),
    "scopeQ empty": (subscription(HTTP_URI, scopeQ=" "), "scopeQ is empty"),
    "scopeQ level missing": (subscription(HTTP_URI, scopeQ="/上海/"), "scopeQ position 4"),
    "notification missing": (_without("notification"), "notification"),
    "endpoint missing": (subscription(HTTP_URI, notification={}), "endpoint"),
    "endpoint uri missing": (_endpoint(uri=None), "uri"),
    "endpoint scheme": (_endpoint(uri="ftp://host/x"), "ftp"),
    "endpoint http without host": (_endpoint(uri="http:///x"), "host"),
    "endpoint accept": (_endpoint(accept="text/plain"), "accept"),
    "receiverInfo not array": (_endpoint(receiverInfo={"a": "b"}), "receiverInfo"),
    "receiverInfo entry": (_endpoint(receiverInfo=[{"key": "a"}]), "receiverInfo"),
    "receiverInfo header name": (
        _endpoint(receiverInfo=[{"key": "bad header", "value": "x"}]),
        "header",
    ),
    "receiverInfo line break": (
        _endpoint(receiverInfo=[{"key": "X-A", "value": "a\r\nb"}]),
        "line breaks",
    ),
    "mqtt without topic": (_endpoint(uri="mqtt://127.0.0.1:1883"), "topic"),
    "mqtt wildcard topic": (_endpoint(uri="mqtt://127.0.0.1:1883/a/#"), "wildcards"),
    "mqtt version": (
        _endpoint(
            uri="mqtt://127.0.0.1:1883/t", notifierInfo=[{"key": "MQTT-Version", "value": "3"}]
        ),
        "MQTT-Version",
    ),
    "mqtt qos": (
        _endpoint(uri="mqtt://127.0.0.1:1883/t", notifierInfo=[{"key": "MQTT-QoS", "value": "5"}]),
        "MQTT-QoS",
    ),
    "format unknown": (_notification(format="xml"), "format"),
    "attributes empty": (_notification(attributes=[]), "attributes"),
    "sysAttrs text": (_notification(sysAttrs="true"), "sysAttrs"),
    "showChanges text": (_notification(showChanges=1), "showChanges"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_subscription_is_bad_request_data(
    api: TestClient, auth: dict[str, str], case: str
) -> None:
    doc, mentions = INVALID[case]
    reply = api.post(SUBS, json=doc, headers=auth)
    assert reply.status_code == 400, reply.text
    problem = reply.json()
    assert problem["type"] == BAD_DATA
    assert "Bad request data" in problem["title"]
    assert mentions in problem["detail"], problem["detail"]
    assert api.get(SUBS, headers=auth).json() == []


def test_request_level_errors(api: TestClient, auth: dict[str, str]) -> None:
    not_json = api.post(SUBS, content=b"{", headers={**auth, "Content-Type": "application/json"})
    assert not_json.status_code == 400
    assert not_json.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest"
    not_object = api.post(SUBS, json=[1], headers=auth)
    assert not_object.status_code == 400
    wrong_media = api.post(SUBS, content=b"{}", headers={**auth, "Content-Type": "text/plain"})
    assert wrong_media.status_code == 415
    doc = subscription(HTTP_URI)
    with_context = api.post(SUBS, json={**doc, "@context": []}, headers=auth)
    assert with_context.status_code == 400
    assert with_context.json()["type"] == BAD_DATA
    ld_without = api.post(
        SUBS, content=orjson.dumps(doc), headers={**auth, "Content-Type": "application/ld+json"}
    )
    assert ld_without.status_code == 400
    assert "@context" in ld_without.json()["detail"]
    unknown_context = api.post(
        SUBS,
        content=orjson.dumps({**doc, "@context": "https://example.org/unknown.jsonld"}),
        headers={**auth, "Content-Type": "application/ld+json"},
    )
    assert unknown_context.status_code == 504
    assert unknown_context.json()["type"].endswith("/LdContextNotAvailable")
    for params in ({"limit": "x"}, {"limit": 5000}, {"offset": -1}, {"limit": 0}, {"count": "1"}):
        reply = api.get(SUBS, params=params, headers=auth)
        assert reply.status_code == 400, params
        assert reply.json()["type"] == BAD_DATA


def test_invalid_patch_leaves_the_subscription(api: TestClient, auth: dict[str, str]) -> None:
    sub_id = create(api, auth, subscription(HTTP_URI, watchedAttributes=["pm25"]))
    for fragment in (
        {"timeInterval": 5},
        {"notification": {"format": "xml", "endpoint": {"uri": HTTP_URI}}},
        {"id": "urn:ngsi-ld:Subscription:other"},
        {"expiresAt": PAST},
        {},
    ):
        reply = api.patch(f"{SUBS}/{sub_id}", json=fragment, headers=auth)
        assert reply.status_code == 400, fragment
        assert reply.json()["type"] == BAD_DATA
    body = api.get(f"{SUBS}/{sub_id}", headers=auth).json()
    assert "timeInterval" not in body
    assert body["notification"]["format"] == "normalized"  # the default, not "xml"


def test_unacceptable_accept_comes_before_not_found(api: TestClient, auth: dict[str, str]) -> None:
    """Clause 6.3.4: an Accept the broker cannot answer is 406, whether or not the
    subscription exists."""
    sub_id = create(api, auth, subscription(HTTP_URI))
    for target in (sub_id, "urn:ngsi-ld:Subscription:unknown"):
        reply = api.get(f"{SUBS}/{target}", headers={**auth, "Accept": "application/xml"})
        assert reply.status_code == 406, reply.text
        assert reply.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/NotAcceptable"
    missing = api.get(f"{SUBS}/urn:ngsi-ld:Subscription:unknown", headers=auth)
    assert missing.status_code == 404
    found = api.get(f"{SUBS}/{sub_id}", headers={**auth, "Accept": "application/*"})
    assert found.status_code == 200
    assert found.json()["id"] == sub_id


def test_patch_takes_merge_patch_json(api: TestClient, auth: dict[str, str]) -> None:
    """PATCH with application/merge-patch+json (clause 6.3.4) reads like application/json:
    the @context from the Link header; other media types stay 415."""
    sub_id = create(api, auth, subscription(HTTP_URI))
    fragment = {"notification": {"endpoint": {"uri": "http://127.0.0.1:9/other"}}}
    merge = {**auth, "Content-Type": "application/merge-patch+json"}
    reply = api.patch(f"{SUBS}/{sub_id}", content=orjson.dumps(fragment), headers=merge)
    assert reply.status_code == 204, reply.text
    body = api.get(f"{SUBS}/{sub_id}", headers=auth).json()
    assert body["notification"]["endpoint"]["uri"] == "http://127.0.0.1:9/other"
    with_context = {"@context": subscriptions.CORE_CONTEXT_URL, **fragment}
    reply = api.patch(f"{SUBS}/{sub_id}", content=orjson.dumps(with_context), headers=merge)
    assert reply.status_code == 400
    assert reply.json()["type"] == BAD_DATA
    for media in ("text/plain", "application/merge-patch+xml"):
        reply = api.patch(
            f"{SUBS}/{sub_id}",
            content=orjson.dumps(fragment),
            headers={**auth, "Content-Type": media},
        )
        assert reply.status_code == 415, media
    created = api.post(SUBS, content=orjson.dumps(subscription(HTTP_URI)), headers=merge)
    assert created.status_code == 415  # only PATCH takes merge-patch


# -- pure parts -----------------------------------------------------------------------------------


def test_type_selection() -> None:
    def expand(name: str) -> str:
        return name.lower()

    assert subscriptions.parse_type_selection("A", expand) == [["a"]]
    assert subscriptions.parse_type_selection("A,B", expand) == [["a"], ["b"]]
    assert subscriptions.parse_type_selection("A|B;C", expand) == [["a"], ["b", "c"]]
    assert subscriptions.parse_type_selection("(A|B);C", expand) == [["a", "c"], ["b", "c"]]
    for bad in ("", "(A", "A;", "A)", ",A"):
        with pytest.raises(ValueError, match="type"):
            subscriptions.parse_type_selection(bad, expand)


def test_event_changes() -> None:
    before = entity()
    after = entity(pm25=40, **{NO2: [{"type": "Property", "value": 3}]})
    created = subscriptions.event_changes(changed("create", after, attributes=[PM25, NO2]))
    assert set(created) == {"entityCreated", "attributeCreated"}
    updated = subscriptions.event_changes(changed("update", after, before, [PM25, NO2]))
    assert updated["attributeUpdated"] == {PM25}
    assert updated["attributeCreated"] == {NO2}
    assert updated["entityUpdated"] == {PM25, NO2}
    replaced = subscriptions.event_changes(changed("replace", entity(pm25=None), before, []))
    assert replaced["attributeDeleted"] == {PM25}
    deleted_attrs = subscriptions.event_changes(
        changed("delete_attrs", entity(pm25=None), before, [PM25])
    )
    assert deleted_attrs == {"attributeDeleted": {PM25}, "entityUpdated": {PM25}}
    # The scope or the types alone: the entity is updated, no attribute is.
    rescoped = subscriptions.event_changes(
        changed("update", {**before, "scope": ["/上海/黄浦区"]}, before, [])
    )
    assert rescoped == {"entityUpdated": set()}
    retyped = subscriptions.event_changes(
        changed(
            "update", {**before, "type": [*before["type"], DEFAULT_VOCAB + "Sensor"]}, before, []
        )
    )
    assert retyped == {"entityUpdated": set()}
    assert subscriptions.event_changes(changed("update", before, before, [])) == {}
    # Deleting an entity deletes its attributes: both triggers, naming every attribute.
    gone = subscriptions.event_changes(changed("delete", None, before))
    assert gone == {"entityDeleted": {PM25, LOCATION}, "attributeDeleted": {PM25, LOCATION}}


def _compiled(**notification: Any) -> subscriptions.Compiled:
    class Row:
        pk = 1
        sub_id = "urn:s"
        tenant = ""
        ld_context = None

        def __init__(self) -> None:
            self.compiled = {"endpoint": {"uri": HTTP_URI}, **notification}

    return subscriptions.Compiled.build(Row())


def test_render_formats() -> None:
    rel = DEFAULT_VOCAB + "refDevice"
    item = entity(**{rel: [{"type": "Relationship", "object": "urn:ngsi-ld:Device:1"}]})
    normalized = subscriptions.render_entity(item, _compiled())
    assert normalized["type"] == "AirQualityObserved"
    assert normalized["pm25"] == {
        "type": "Property",
        "value": 35,
        "unitCode": "GQ",
        "observedAt": "2026-11-24T01:00:00Z",
    }
    assert normalized["location"]["type"] == "GeoProperty"
    assert "createdAt" not in normalized
    key_values = subscriptions.render_entity(item, _compiled(format="keyValues"))
    assert key_values["pm25"] == 35
    assert key_values["refDevice"] == "urn:ngsi-ld:Device:1"
    assert key_values["location"] == {"type": "Point", "coordinates": [121.47, 31.23]}
    concise = subscriptions.render_entity(item, _compiled(format="concise"))
    assert concise["pm25"] == {"value": 35, "unitCode": "GQ", "observedAt": "2026-11-24T01:00:00Z"}
    assert concise["refDevice"] == {"object": "urn:ngsi-ld:Device:1"}
    assert concise["location"] == {"type": "Point", "coordinates": [121.47, 31.23]}
    chosen = subscriptions.render_entity(item, _compiled(attributes=[PM25], sysAttrs=True))
    assert set(chosen) == {"id", "type", "pm25", "createdAt", "modifiedAt"}
    two = entity(
        **{
            PM25: [
                {"type": "Property", "value": 1},
                {"type": "Property", "value": 2, "datasetId": "urn:d:2"},
            ]
        }
    )
    assert len(subscriptions.render_entity(two, _compiled())["pm25"]) == 2
    # keyValues of several instances: the "dataset" map of clause 4.5.4, as GET gives it.
    assert subscriptions.render_entity(two, _compiled(format="keyValues"))["pm25"] == {
        "dataset": {"@none": 1, "urn:d:2": 2}
    }
    shown = subscriptions.render_entity(
        entity(pm25=40), _compiled(showChanges=True), previous=entity(pm25=35)
    )
    assert shown["pm25"]["previousValue"] == 35
