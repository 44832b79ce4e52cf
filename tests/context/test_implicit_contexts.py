"""ImplicitlyCreated @contexts (clause 5.13): a subscription written with an @context that is
not one URL gets a stored copy of it, named by the subscription's `jsonldContext`."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.context.conftest import BASE, LD, problem

H = dict[str, str]
CONTEXTS = f"{BASE}/jsonldContexts"
SUBS = f"{BASE}/subscriptions"
INLINE = {"sdm": "https://smartdatamodels.org/dataModel.Environment/", "pm25": "sdm:pm25"}


def hosted(client: TestClient, writer: H, term: str) -> str:
    """The absolute URL of a new Hosted @context defining `term`."""
    document = {"@context": {term: f"https://example.org/terms#{term}"}}
    reply = client.post(CONTEXTS, json=document, headers=writer)
    assert reply.status_code == 201, reply.text
    listed = client.get(CONTEXTS, params={"kind": "Hosted"}, headers=writer).json()
    url: str = next(u for u in listed if u.endswith(reply.headers["location"]))
    return url


def subscribe(client: TestClient, writer: H, sub_id: str, ld_context: Any, **extra: Any) -> Any:
    doc = {
        "id": sub_id,
        "type": "Subscription",
        "entities": [{"type": "AirQualityObserved"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}},
        "@context": ld_context,
        **extra,
    }
    return client.post(SUBS, json=doc, headers={**writer, "Content-Type": LD})


def implicit(client: TestClient, headers: H) -> list[str]:
    reply = client.get(CONTEXTS, params={"kind": "ImplicitlyCreated"}, headers=headers)
    assert reply.status_code == 200, reply.text
    urls: list[str] = reply.json()
    return urls


def json_context(client: TestClient, headers: H, sub_id: str) -> Any:
    reply = client.get(f"{SUBS}/{sub_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.json().get("jsonldContext")


def test_several_urls_get_one_implicit_context(client: TestClient, writer: H, reader: H) -> None:
    first, second = hosted(client, writer, "pm25"), hosted(client, writer, "no2")
    reply = subscribe(client, writer, "urn:ngsi-ld:Subscription:i1", [first, second])
    assert reply.status_code == 201, reply.text

    [url] = implicit(client, reader)
    assert json_context(client, writer, "urn:ngsi-ld:Subscription:i1") == url
    local_id = url.rsplit("/", 1)[1]
    # Served like a Hosted one, with the request's @context as it was written.
    served = client.get(f"{CONTEXTS}/{local_id}", headers=reader)
    assert served.status_code == 200
    assert served.json() == {"@context": [first, second]}
    info = client.get(f"{CONTEXTS}/{local_id}", params={"details": "true"}, headers=reader).json()
    assert info["kind"] == "ImplicitlyCreated"
    assert info["URL"] == url
    # Its one URL reads entities as the two would: a term of each expands.
    entity = {"id": "urn:ngsi-ld:Thing:1", "type": "Thing", "pm25": 1, "no2": 2}
    made = client.post(
        f"{BASE}/entities",
        json=entity,
        headers={**writer, "Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"'},
    )
    assert made.status_code == 201, made.text
    stored = client.get(f"{BASE}/entities/urn:ngsi-ld:Thing:1", headers=reader).json()
    assert {"https://example.org/terms#pm25", "https://example.org/terms#no2"} <= set(stored)
    # Read with it, the subscription's names are shown as written, and the Link names it.
    link = {**writer, "Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"'}
    got = client.get(f"{SUBS}/urn:ngsi-ld:Subscription:i1", headers=link)
    assert url in got.headers["link"]
    assert got.json()["entities"] == [{"type": "AirQualityObserved"}]


def test_same_context_shares_one_entry_and_one_url_needs_none(
    client: TestClient, writer: H, reader: H
) -> None:
    for n in (1, 2):
        reply = subscribe(client, writer, f"urn:ngsi-ld:Subscription:s{n}", INLINE)
        assert reply.status_code == 201, reply.text
    [url] = implicit(client, reader)
    for n in (1, 2):
        assert json_context(client, writer, f"urn:ngsi-ld:Subscription:s{n}") == url
    listed = client.get(SUBS, headers=writer).json()
    assert {s["jsonldContext"] for s in listed} == {url}

    # One URL (with or without the core @context) is its own jsonldContext: no new entry.
    one = hosted(client, writer, "pm25")
    reply = subscribe(client, writer, "urn:ngsi-ld:Subscription:one", [one])
    assert reply.status_code == 201, reply.text
    assert json_context(client, writer, "urn:ngsi-ld:Subscription:one") == one
    # A subscription naming its own jsonldContext needs none either.
    reply = subscribe(
        client, writer, "urn:ngsi-ld:Subscription:own", [one, INLINE], jsonldContext=one
    )
    assert reply.status_code == 201, reply.text
    assert implicit(client, reader) == [url]


def test_a_refused_subscription_leaves_no_implicit_context(
    client: TestClient, writer: H, reader: H
) -> None:
    reply = subscribe(client, writer, "urn:ngsi-ld:Subscription:bad", INLINE, throttling=-1)
    problem(reply, "BadRequestData", 400)
    ok = subscribe(client, writer, "urn:ngsi-ld:Subscription:dup", INLINE)
    assert ok.status_code == 201, ok.text
    again = subscribe(client, writer, "urn:ngsi-ld:Subscription:dup", {"other": "urn:x:other"})
    problem(again, "AlreadyExists", 409)
    # Only the stored subscription's @context was kept.
    served = [
        client.get(f"{CONTEXTS}/{url.rsplit('/', 1)[1]}", headers=reader).json()
        for url in implicit(client, reader)
    ]
    assert served == [{"@context": INLINE}]


def test_delete_but_not_reload_and_patch_makes_a_new_one(
    client: TestClient, writer: H, reader: H
) -> None:
    sub_id = "urn:ngsi-ld:Subscription:p"
    assert subscribe(client, writer, sub_id, INLINE).status_code == 201
    [url] = implicit(client, reader)
    local_id = url.rsplit("/", 1)[1]

    problem(
        client.delete(f"{CONTEXTS}/{local_id}", params={"reload": "true"}, headers=writer),
        "BadRequestData",
        400,
    )
    # A PATCH with another @context that is not one URL: a new entry, named from then on.
    other = {"no2": "https://example.org/terms#no2"}
    patch = client.patch(
        f"{SUBS}/{sub_id}",
        json={"description": "no2 now", "@context": other},
        headers={**writer, "Content-Type": LD},
    )
    assert patch.status_code == 204, patch.text
    newer = [u for u in implicit(client, reader) if u != url]
    assert len(newer) == 1
    assert json_context(client, writer, sub_id) == newer[0]

    deleted = client.delete(f"{CONTEXTS}/{newer[0].rsplit('/', 1)[1]}", headers=writer)
    assert deleted.status_code == 204
    # The subscription stays and is still compacted with its own @context; it just has no
    # single URL to show for it any more.
    assert json_context(client, writer, sub_id) is None
