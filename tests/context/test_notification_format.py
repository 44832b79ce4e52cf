"""What notifications carry for deletions and changes (ETSI GS CIM 009 v1.8, clause 5.8.6),
end to end: entity API -> matcher -> delivery to a local receiver.

- a deleted attribute: its type's NGSI-LD Null in the type's own member (`value`, `object`,
  `languageMap` {"@none": ...}, `valueList`, `json`, `vocab`), `deletedAt` only with sysAttrs;
- a deleted entity: `id`, `type`, `deletedAt` (entityDeleted), and the deleted attributes for
  attributeDeleted, which DELETE /entities fires too;
- showChanges: `previousValue`/`previousObject`/`previousLanguageMap`/`previousValueList`/
  `previousJson`/`previousVocab`;
- notification.pick/omit (clause 4.21) and the subscription's defaults and small routes.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from pujiang.context import subscriptions
from tests.context import test_subscriptions as shared
from tests.context.test_subscriptions import SUBS, Receiver, create

api = shared.api
auth = shared.auth
receiver = shared.receiver
runtime = shared.runtime
make_receiver = shared.make_receiver

H = dict[str, str]
ENTITIES = "/ngsi-ld/v1/entities"
NULL = "urn:ngsi-ld:null"
EID = "urn:ngsi-ld:Building:notify-1"
POINT = {"type": "Point", "coordinates": [121.4997, 31.2397]}

ATTRIBUTES: dict[str, dict[str, Any]] = {
    "name": {"type": "Property", "value": "东方明珠"},
    "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Shanghai"},
    "location": {"type": "GeoProperty", "value": POINT},
    "street": {"type": "LanguageProperty", "languageMap": {"zh": "世纪大道", "en": "Century Ave"}},
    "tags": {"type": "ListProperty", "valueList": ["tower", "tv"]},
    "config": {"type": "JsonProperty", "json": {"floors": [1, 2], "open": None}},
    "category": {"type": "VocabProperty", "vocab": "landmark"},
}
# Per attribute: (how the deleted attribute is notified, its previous-value member and value).
DELETED: dict[str, tuple[dict[str, Any], str, Any]] = {
    "name": ({"type": "Property", "value": NULL}, "previousValue", "东方明珠"),
    "locatedAt": (
        {"type": "Relationship", "object": NULL},
        "previousObject",
        "urn:ngsi-ld:City:Shanghai",
    ),
    "location": ({"type": "GeoProperty", "value": NULL}, "previousValue", POINT),
    "street": (
        {"type": "LanguageProperty", "languageMap": {"@none": NULL}},
        "previousLanguageMap",
        {"zh": "世纪大道", "en": "Century Ave"},
    ),
    "tags": ({"type": "ListProperty", "valueList": [NULL]}, "previousValueList", ["tower", "tv"]),
    "config": (
        {"type": "JsonProperty", "json": NULL},
        "previousJson",
        {"floors": [1, 2], "open": None},
    ),
    # The vocab is compacted with the subscription's @context, as GET compacts it.
    "category": ({"type": "VocabProperty", "vocab": NULL}, "previousVocab", "landmark"),
}


def building(entity_id: str = EID, **extra: Any) -> dict[str, Any]:
    return {"id": entity_id, "type": "Building", **ATTRIBUTES, **extra}


def add_entity(api: TestClient, auth: H, doc: dict[str, Any]) -> None:
    reply = api.post(ENTITIES, json=doc, headers=auth)
    assert reply.status_code == 201, reply.text


def watch(api: TestClient, auth: H, uri: str, triggers: list[str], **notification: Any) -> str:
    doc = {
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notificationTrigger": triggers,
        "notification": {"endpoint": {"uri": uri}, **notification},
    }
    return create(api, auth, doc)


def one(receiver: Receiver) -> dict[str, Any]:
    """The single entity of the single notification that arrives."""
    got = receiver.wait(1)
    assert len(got) == 1, "no notification arrived"
    data = got[0].body["data"]
    assert len(data) == 1, data
    assert receiver.quiet(0.2) == []
    entity: dict[str, Any] = data[0]
    return entity


# -- deleted attributes ---------------------------------------------------------------------------


@pytest.mark.parametrize("attr", sorted(DELETED))
def test_deleted_attribute_is_its_types_null(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, receiver: Receiver, attr: str
) -> None:
    add_entity(api, auth, building())
    watch(api, auth, receiver.url, ["attributeDeleted"])
    assert api.delete(f"{ENTITIES}/{EID}/attrs/{attr}", headers=auth).status_code == 204
    data = one(receiver)
    # The entity after the change, with the deleted attribute as its Null (no deletedAt
    # without sysAttrs: clause 5.8.6).
    expected = {"id": EID, "type": "Building", **ATTRIBUTES, attr: DELETED[attr][0]}
    assert data == expected


@pytest.mark.parametrize("attr", sorted(DELETED))
def test_show_changes_gives_the_previous_member_of_each_type(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, receiver: Receiver, attr: str
) -> None:
    add_entity(api, auth, building())
    watch(api, auth, receiver.url, ["attributeDeleted"], showChanges=True)
    assert api.delete(f"{ENTITIES}/{EID}/attrs/{attr}", headers=auth).status_code == 204
    null, member, previous = DELETED[attr]
    assert one(receiver)[attr] == {**null, member: previous}


@pytest.mark.parametrize(
    "how",
    ["update attributes", "partial attribute update", "merge", "delete attribute"],
)
def test_every_way_of_deleting_notifies_alike(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, receiver: Receiver, how: str
) -> None:
    add_entity(api, auth, building())
    watch(api, auth, receiver.url, ["attributeDeleted"])
    gone = {"type": "Relationship", "object": NULL}
    if how == "update attributes":
        reply = api.patch(f"{ENTITIES}/{EID}/attrs", json={"locatedAt": gone}, headers=auth)
    elif how == "partial attribute update":
        reply = api.patch(f"{ENTITIES}/{EID}/attrs/locatedAt", json=gone, headers=auth)
    elif how == "merge":
        reply = api.patch(f"{ENTITIES}/{EID}", json={"locatedAt": gone}, headers=auth)
    else:
        reply = api.delete(f"{ENTITIES}/{EID}/attrs/locatedAt", headers=auth)
    assert reply.status_code == 204, reply.text
    data = one(receiver)
    assert data["locatedAt"] == {"type": "Relationship", "object": NULL}
    assert data["name"] == ATTRIBUTES["name"]


def test_sys_attrs_add_the_deletion_time(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, receiver: Receiver
) -> None:
    add_entity(api, auth, building())
    watch(api, auth, receiver.url, ["attributeDeleted"], sysAttrs=True)
    reply = api.patch(f"{ENTITIES}/{EID}/attrs/name", json={"value": NULL}, headers=auth)
    assert reply.status_code == 204
    data = one(receiver)
    assert set(data["name"]) == {"type", "value", "createdAt", "modifiedAt", "deletedAt"}
    assert data["name"]["value"] == NULL
    assert {"createdAt", "modifiedAt"} <= set(data)


def test_key_values_and_concise(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, make_receiver: Any
) -> None:
    simple, concise = make_receiver(), make_receiver()
    add_entity(api, auth, building())
    watch(api, auth, simple.url, ["attributeDeleted"], format="keyValues")
    watch(api, auth, concise.url, ["attributeDeleted"], format="concise")
    reply = api.patch(
        f"{ENTITIES}/{EID}/attrs",
        json={"name": DELETED["name"][0], "locatedAt": DELETED["locatedAt"][0]},
        headers=auth,
    )
    assert reply.status_code == 204, reply.text
    as_simple = one(simple)
    assert as_simple["name"] == NULL
    assert as_simple["locatedAt"] == NULL
    assert as_simple["street"] == {"languageMap": {"zh": "世纪大道", "en": "Century Ave"}}
    as_concise = one(concise)
    assert as_concise["name"] == NULL
    assert as_concise["locatedAt"] == {"object": NULL}
    assert as_concise["location"] == POINT


def test_one_deleted_instance_is_told_by_its_dataset_id(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, make_receiver: Any
) -> None:
    normalized, simple = make_receiver(), make_receiver()
    names = [
        {"type": "Property", "value": "东方明珠"},
        {"type": "Property", "value": "Oriental Pearl", "datasetId": "urn:ngsi-ld:Dataset:en"},
        {"type": "Property", "value": "Perle", "datasetId": "urn:ngsi-ld:Dataset:fr"},
    ]
    add_entity(api, auth, {"id": EID, "type": "Building", "name": names})
    watch(api, auth, normalized.url, ["attributeDeleted"])
    watch(api, auth, simple.url, ["attributeDeleted"], format="keyValues")
    reply = api.delete(
        f"{ENTITIES}/{EID}/attrs/name", params={"datasetId": "urn:ngsi-ld:Dataset:fr"}, headers=auth
    )
    assert reply.status_code == 204
    gone_fr = {"type": "Property", "value": NULL, "datasetId": "urn:ngsi-ld:Dataset:fr"}
    assert sorted(one(normalized)["name"], key=str) == sorted([*names[:2], gone_fr], key=str)
    assert one(simple)["name"] == {
        "dataset": {
            "@none": "东方明珠",
            "urn:ngsi-ld:Dataset:en": "Oriental Pearl",
            "urn:ngsi-ld:Dataset:fr": NULL,
        }
    }
    # The same by an NGSI-LD Null for one datasetId (the attribute stays: still a deletion).
    gone_en = {"type": "Property", "value": NULL, "datasetId": "urn:ngsi-ld:Dataset:en"}
    reply = api.patch(f"{ENTITIES}/{EID}/attrs", json={"name": gone_en}, headers=auth)
    assert reply.status_code == 204, reply.text
    assert sorted(one(normalized)["name"], key=str) == sorted([names[0], gone_en], key=str)
    one(simple)
    # deleteAll: the whole attribute is gone, one Null says so.
    reply = api.delete(f"{ENTITIES}/{EID}/attrs/name", params={"deleteAll": "true"}, headers=auth)
    assert reply.status_code == 204
    assert one(normalized)["name"] == {"type": "Property", "value": NULL}
    assert one(simple)["name"] == NULL


# -- deleted entities -----------------------------------------------------------------------------


def test_entity_deleted_carries_only_deleted_at(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, make_receiver: Any
) -> None:
    plain, with_sys = make_receiver(), make_receiver()
    add_entity(api, auth, building())
    watch(api, auth, plain.url, ["entityDeleted"])
    watch(api, auth, with_sys.url, ["entityDeleted"], sysAttrs=True, format="keyValues")
    assert api.delete(f"{ENTITIES}/{EID}", headers=auth).status_code == 204
    data = one(plain)
    assert set(data) == {"id", "type", "deletedAt"}
    assert (data["id"], data["type"]) == (EID, "Building")
    assert set(one(with_sys)) == {"id", "type", "createdAt", "modifiedAt", "deletedAt"}


def test_entity_deleted_with_show_changes_gives_every_previous_value(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, receiver: Receiver
) -> None:
    add_entity(api, auth, building())
    watch(api, auth, receiver.url, ["entityDeleted"], showChanges=True)
    assert api.delete(f"{ENTITIES}/{EID}", headers=auth).status_code == 204
    data = one(receiver)
    assert set(data) == {"id", "type", "deletedAt", *ATTRIBUTES}
    for attr, (null, member, previous) in DELETED.items():
        assert data[attr] == {**null, member: previous}, attr


def test_deleting_an_entity_fires_attribute_deleted(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, make_receiver: Any
) -> None:
    watched, with_sys, unwatched = make_receiver(), make_receiver(), make_receiver()
    add_entity(api, auth, building())
    watch(api, auth, watched.url, ["attributeDeleted"])
    create(
        api,
        auth,
        {
            "type": "Subscription",
            "entities": [{"type": "Building"}],
            "watchedAttributes": ["name"],
            "notificationTrigger": ["attributeDeleted"],
            "notification": {"endpoint": {"uri": with_sys.url}, "sysAttrs": True},
        },
    )
    create(
        api,
        auth,
        {
            "type": "Subscription",
            "entities": [{"type": "Building"}],
            "watchedAttributes": ["height"],
            "notificationTrigger": ["attributeDeleted"],
            "notification": {"endpoint": {"uri": unwatched.url}},
        },
    )
    assert api.delete(f"{ENTITIES}/{EID}", headers=auth).status_code == 204
    # Every attribute is deleted with the entity.
    data = one(watched)
    assert data == {
        "id": EID,
        "type": "Building",
        "deletedAt": data["deletedAt"],
        **{attr: DELETED[attr][0] for attr in ATTRIBUTES},
    }
    # With watchedAttributes: the watched one that fired it.
    data = one(with_sys)
    assert set(data) == {"id", "type", "createdAt", "modifiedAt", "deletedAt", "name"}
    assert set(data["name"]) == {"type", "value", "createdAt", "modifiedAt", "deletedAt"}
    assert data["name"]["deletedAt"] == data["deletedAt"]
    assert unwatched.quiet(0.3) == []  # the entity had no height


# -- showChanges on updates -----------------------------------------------------------------------


def test_show_changes_on_updates(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, receiver: Receiver
) -> None:
    add_entity(api, auth, building())
    watch(api, auth, receiver.url, ["attributeUpdated"], showChanges=True)
    reply = api.patch(
        f"{ENTITIES}/{EID}/attrs",
        json={
            "name": {"type": "Property", "value": "明珠塔"},
            "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Pudong"},
            "category": {"type": "VocabProperty", "vocab": "tower"},
        },
        headers=auth,
    )
    assert reply.status_code == 204, reply.text
    data = one(receiver)
    assert data["name"] == {"type": "Property", "value": "明珠塔", "previousValue": "东方明珠"}
    assert data["locatedAt"] == {
        "type": "Relationship",
        "object": "urn:ngsi-ld:City:Pudong",
        "previousObject": "urn:ngsi-ld:City:Shanghai",
    }
    assert data["category"] == {
        "type": "VocabProperty",
        "vocab": "tower",
        "previousVocab": "landmark",
    }
    # Attributes the change left alone carry no previous value.
    assert data["street"] == ATTRIBUTES["street"]


# -- pick and omit --------------------------------------------------------------------------------


def test_pick_and_omit_shape_the_notified_entities(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, make_receiver: Any
) -> None:
    picked, omitted = make_receiver(), make_receiver()
    add_entity(api, auth, building())
    watch(api, auth, picked.url, ["attributeUpdated"], pick=["id", "name"])
    watch(api, auth, omitted.url, ["attributeUpdated"], omit=["type", "name", "config"])
    reply = api.patch(
        f"{ENTITIES}/{EID}/attrs", json={"name": {"type": "Property", "value": "塔"}}, headers=auth
    )
    assert reply.status_code == 204, reply.text
    assert one(picked) == {"id": EID, "name": {"type": "Property", "value": "塔"}}
    rest = one(omitted)
    assert set(rest) == {"id", *ATTRIBUTES} - {"name", "config"}


@pytest.mark.parametrize(
    ("notification", "named"),
    [
        ({"pick": ["id"], "omit": ["id"]}, "id"),
        ({"pick": ["id"], "attributes": ["name"]}, "attributes"),
        ({"omit": ["name"], "attributes": ["name"]}, "attributes"),
        ({"pick": []}, "pick"),
        ({"omit": []}, "omit"),
        ({"pick": ["name{sub}"]}, "join"),
        ({"pick": ["na me"]}, "pick"),
        ({"attributes": ["id"]}, "attributes"),
        ({"format": "keyValues", "showChanges": True}, "showChanges"),
        ({"format": "simplified", "showChanges": True}, "showChanges"),
    ],
)
def test_bad_notification_parameters(
    api: TestClient, auth: H, notification: dict[str, Any], named: str
) -> None:
    doc = {
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}, **notification},
    }
    reply = api.post(SUBS, json=doc, headers=auth)
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert named in body["detail"]


# -- the subscription document and routes ---------------------------------------------------------


def test_defaults_of_a_created_subscription(api: TestClient, auth: H) -> None:
    sub_id = create(
        api,
        auth,
        {
            "type": "Subscription",
            "entities": [{"type": "Building"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}},
        },
    )
    body = api.get(f"{SUBS}/{sub_id}", headers=auth).json()
    assert body["status"] == "active"
    assert "isActive" not in body  # true by default; shown when written
    assert body["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]
    assert body["jsonldContext"] == subscriptions.CORE_CONTEXT_URL
    notification = body["notification"]
    assert notification["format"] == "normalized"
    assert notification["endpoint"] == {"uri": "http://127.0.0.1:9/n", "accept": "application/json"}
    assert "timesSent" not in notification  # shown once something was sent
    assert "lastNotification" not in notification
    # What was written stays as written; "simplified" is the v1.8 name of keyValues.
    written = create(
        api,
        auth,
        {
            "type": "Subscription",
            "entities": [{"type": "Building"}],
            "isActive": False,
            "notificationTrigger": ["entityDeleted"],
            "notification": {
                "endpoint": {"uri": "http://127.0.0.1:9/n", "accept": "application/ld+json"},
                "format": "simplified",
            },
        },
    )
    body = api.get(f"{SUBS}/{written}", headers=auth).json()
    assert body["isActive"] is False
    assert body["status"] == "paused"
    assert body["notificationTrigger"] == ["entityDeleted"]
    assert body["notification"]["format"] == "simplified"
    assert body["notification"]["endpoint"]["accept"] == "application/ld+json"


def test_collection_with_a_trailing_slash(api: TestClient, auth: H) -> None:
    sub_id = create(
        api,
        auth,
        {
            "type": "Subscription",
            "entities": [{"type": "Building"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}},
        },
    )
    listed = api.get(f"{SUBS}/", params={"count": "true"}, headers=auth)
    assert listed.status_code == 200, listed.text
    assert [s["id"] for s in listed.json()] == [sub_id]
    assert listed.headers["NGSILD-Results-Count"] == "1"
    assert api.get(SUBS, headers=auth).json() == listed.json()
    # PATCH and DELETE need a subscription id: not allowed on the collection.
    assert api.delete(f"{SUBS}/", headers=auth).status_code == 405
    assert api.patch(f"{SUBS}/", json={"q": "a>1"}, headers=auth).status_code == 405
    # An id that is no URI is bad data, not an unknown subscription.
    for reply in (
        api.get(f"{SUBS}/InvalidUri", headers=auth),
        api.delete(f"{SUBS}/InvalidUri", headers=auth),
        api.patch(f"{SUBS}/InvalidUri", json={"q": "a>1"}, headers=auth),
    ):
        assert reply.status_code == 400, reply.text
        assert reply.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert api.get(f"{SUBS}/{sub_id}", headers=auth).status_code == 200


def test_concise_show_changes_keeps_bare_values_apart() -> None:
    """Concise: a value shown bare gets an object again to carry its previous value (a
    GeoProperty's bare value is the geometry itself, which must not take the member)."""
    moved = {"type": "Point", "coordinates": [121.5, 31.2]}
    before = shared.entity(pm25=35)
    after = shared.entity(pm25=40, lon=121.5, lat=31.2)
    compiled = shared._compiled(format="concise", showChanges=True)
    data = subscriptions.render_entity(after, compiled, previous=before)
    assert data["location"] == {"value": moved, "previousValue": POINT_BEFORE}
    assert data["pm25"]["previousValue"] == 35
    assert data["pm25"]["value"] == 40
    unchanged = subscriptions.render_entity(before, compiled, previous=before)
    assert unchanged["location"] == POINT_BEFORE


POINT_BEFORE = {"type": "Point", "coordinates": [121.47, 31.23]}


# -- the subscription's datasetId and JSON-LD notifications ---------------------------------------

NAMES = [
    {"type": "Property", "value": "东方明珠"},
    {"type": "Property", "value": "Oriental Pearl", "datasetId": "urn:ngsi-ld:Dataset:en"},
    {"type": "Property", "value": "Perle", "datasetId": "urn:ngsi-ld:Dataset:fr"},
]


def test_subscription_dataset_id_chooses_the_notified_instances(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, make_receiver: Any
) -> None:
    """Table 5.2.12-1 `datasetId`: only the instances of those datasets ("@none": the default
    instance) are notified; an attribute without such an instance is left out."""
    french, default, simple = make_receiver(), make_receiver(), make_receiver()
    add_entity(
        api,
        auth,
        {
            "id": EID,
            "type": "Building",
            "name": NAMES,
            "height": {"type": "Property", "value": 468},
        },
    )
    for target, dataset, fmt in (
        (french, ["urn:ngsi-ld:Dataset:fr"], "normalized"),
        (default, "@none", "normalized"),
        (simple, ["urn:ngsi-ld:Dataset:fr", "urn:ngsi-ld:Dataset:en"], "keyValues"),
    ):
        doc = {
            "type": "Subscription",
            "entities": [{"type": "Building"}],
            "datasetId": dataset,
            "notificationTrigger": ["attributeUpdated", "attributeDeleted"],
            "notification": {"endpoint": {"uri": target.url}, "format": fmt},
        }
        create(api, auth, doc)
    reply = api.patch(
        f"{ENTITIES}/{EID}/attrs",
        json={"name": {**NAMES[2], "value": "La Perle"}},
        headers=auth,
    )
    assert reply.status_code == 204, reply.text
    fr = one(french)
    assert {k: v for k, v in fr.items() if k != "id"} == {
        "type": "Building",
        "name": {**NAMES[2], "value": "La Perle"},
    }
    assert one(default) == {
        "id": EID,
        "type": "Building",
        "name": NAMES[0],
        "height": NAMES[0] | {"value": 468},
    }
    assert one(simple)["name"] == {
        "dataset": {
            "urn:ngsi-ld:Dataset:en": "Oriental Pearl",
            "urn:ngsi-ld:Dataset:fr": "La Perle",
        }
    }
    # Deleting the chosen instance is told as that instance's Null.
    reply = api.delete(
        f"{ENTITIES}/{EID}/attrs/name", params={"datasetId": "urn:ngsi-ld:Dataset:fr"}, headers=auth
    )
    assert reply.status_code == 204
    assert one(french)["name"] == {
        "type": "Property",
        "value": NULL,
        "datasetId": "urn:ngsi-ld:Dataset:fr",
    }
    assert one(simple)["name"] == {
        "dataset": {"urn:ngsi-ld:Dataset:en": "Oriental Pearl", "urn:ngsi-ld:Dataset:fr": NULL}
    }
    default.wait(1)


@pytest.mark.parametrize("dataset", [[], "fr", ["urn:ngsi-ld:Dataset:fr", 3], {"id": "x:y"}])
def test_bad_subscription_dataset_id(api: TestClient, auth: H, dataset: Any) -> None:
    doc = {
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "datasetId": dataset,
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}},
    }
    reply = api.post(SUBS, json=doc, headers=auth)
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert "datasetId" in body["detail"]


def test_jsonld_notification_entities_carry_the_context(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, make_receiver: Any
) -> None:
    """Endpoint accept application/ld+json: each notified entity is a JSON-LD document with
    the subscription's @context (`jsonldContext` where given); application/json: none, the
    context goes in the Link header."""
    written, chosen, plain = make_receiver(), make_receiver(), make_receiver()
    add_entity(api, auth, building())
    ld = {"uri": "", "accept": "application/ld+json"}
    core = subscriptions.CORE_CONTEXT_URL
    for target, extra in (
        (written, {}),
        (chosen, {"jsonldContext": core}),
    ):
        doc = {
            "type": "Subscription",
            "entities": [{"type": "Building"}],
            "notification": {"endpoint": {**ld, "uri": target.url}},
            **extra,
        }
        create(api, auth, doc)
    watch(api, auth, plain.url, ["attributeUpdated"])
    reply = api.patch(
        f"{ENTITIES}/{EID}/attrs", json={"name": {"type": "Property", "value": "x"}}, headers=auth
    )
    assert reply.status_code == 204, reply.text
    for target in (written, chosen):
        [got] = target.wait(1)
        assert got.headers["Content-Type"] == "application/ld+json"
        assert "Link" not in got.headers
        assert got.body["@context"] == core
        assert [e["@context"] for e in got.body["data"]] == [core]
        assert got.body["data"][0]["name"] == {"type": "Property", "value": "x"}
    [got] = plain.wait(1)
    assert "@context" not in got.body
    assert "@context" not in got.body["data"][0]
    assert core in got.headers["Link"]


def test_jsonld_context_of_one_url_is_sent_as_a_string() -> None:
    url = "https://example.org/ctx.jsonld"
    for written, sent in (
        ([url], url),
        ([url, subscriptions.CORE_CONTEXT_URL], url),
        (None, subscriptions.CORE_CONTEXT_URL),
        ({"name": "https://schema.org/name"}, {"name": "https://schema.org/name"}),
    ):
        body = subscriptions.notification_body(
            "urn:ngsi-ld:Subscription:s", [{"id": "urn:a:1"}], "application/ld+json", written
        )
        assert body["@context"] == sent
        assert body["data"] == [{"id": "urn:a:1", "@context": sent}]
    body = subscriptions.notification_body(
        "urn:ngsi-ld:Subscription:s", [{"id": "urn:a:1"}], "application/json", [url]
    )
    assert "@context" not in body
    assert body["data"] == [{"id": "urn:a:1"}]


def test_jsonld_context_member_compacts_the_notification(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, make_receiver: Any
) -> None:
    """Table 5.2.12-1 `jsonldContext`: the @context notifications are compacted with (and
    that they name); without it, the @context the subscription was written with."""
    core = subscriptions.CORE_CONTEXT_URL
    own = {"Tower": "https://example.org/ns/Tower", "height": "https://example.org/ns/height"}
    ld = {**auth, "Content-Type": "application/ld+json"}
    doc = {"id": EID, "type": "Tower", "height": {"type": "Property", "value": 468}}
    reply = api.post(ENTITIES, content=orjson.dumps({**doc, "@context": [own, core]}), headers=ld)
    assert reply.status_code == 201, reply.text
    chosen, written = make_receiver(), make_receiver()
    for target, extra in ((chosen, {"jsonldContext": core}), (written, {})):
        sub = {
            "type": "Subscription",
            "entities": [{"type": "Tower"}],
            "notification": {"endpoint": {"uri": target.url}},
            "@context": [own, core],
            **extra,
        }
        reply = api.post(SUBS, content=orjson.dumps(sub), headers=ld)
        assert reply.status_code == 201, reply.text
    patch = {"height": {"type": "Property", "value": 470}, "@context": [own, core]}
    reply = api.patch(f"{ENTITIES}/{EID}/attrs", content=orjson.dumps(patch), headers=ld)
    assert reply.status_code == 204, reply.text
    [got] = chosen.wait(1)
    assert got.body["data"] == [
        {
            "id": EID,
            "type": own["Tower"],
            own["height"]: {"type": "Property", "value": 470},
        }
    ]
    assert f"<{core}>" in got.headers["Link"]
    [got] = written.wait(1)
    assert got.body["data"] == [
        {"id": EID, "type": "Tower", "height": {"type": "Property", "value": 470}}
    ]
