"""What GET shows of a subscription's state, the Link header of its JSON replies, and what a
PATCH of `notification` must carry (ETSI GS CIM 009 v1.8: Table 5.2.14-1, clauses 5.8.2,
5.5.8 and 6.3.5)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.testclient import TestClient

from pujiang.context import subscriptions
from pujiang.platform.deps import AppContext
from tests.conftest import eventually
from tests.context import test_subscriptions as shared
from tests.context.test_subscriptions import (
    BAD_DATA,
    SUBS,
    Receiver,
    changed,
    create,
    entity,
    publish,
    subscription,
)

# The fixtures of test_subscriptions.py, used here by name.
api = shared.api
auth = shared.auth
receiver = shared.receiver
make_receiver = shared.make_receiver
runtime = shared.runtime

H = dict[str, str]
LD = "application/ld+json"
CONTEXTS = "/ngsi-ld/v1/jsonldContexts"
STATUS_MEMBERS = ("timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure")
USER_CONTEXT = {"@context": {"sdm": "https://smartdatamodels.org/dataModel.Environment/"}}


def link(url: str) -> str:
    return f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="{LD}"'


def notification_of(api: TestClient, auth: H, sub_id: str) -> dict[str, Any]:
    reply = api.get(f"{SUBS}/{sub_id}", headers=auth)
    assert reply.status_code == 200, reply.text
    shown: dict[str, Any] = reply.json()["notification"]
    return shown


def hosted_context(api: TestClient, auth: H) -> str:
    """The URL of a user @context stored in the broker (so subscriptions can name it)."""
    reply = api.post(CONTEXTS, json=USER_CONTEXT, headers=auth)
    assert reply.status_code == 201, reply.text
    local_id = reply.headers["location"].rsplit("/", 1)[1]
    details = api.get(f"{CONTEXTS}/{local_id}", params={"details": "true"}, headers=auth)
    url: str = details.json()["URL"]
    return url


# -- status members (Table 5.2.14-1: each 0..1, provided by the system) -------------------------


def test_status_members_are_absent_until_a_notification_is_sent(
    api: TestClient,
    auth: H,
    context: AppContext,
    runtime: subscriptions.Runtime,
    receiver: Receiver,
) -> None:
    doc = subscription(receiver.url)
    # Read-only members a client sends are not taken over.
    doc["notification"] = {**doc["notification"], "timesSent": 42, "lastSuccess": "2020-01-01Z"}
    sub_id = create(api, auth, doc)
    fresh = notification_of(api, auth, sub_id)
    for member in (*STATUS_MEMBERS, "status"):
        assert member not in fresh, member
    [listed] = api.get(SUBS, headers=auth).json()
    for member in (*STATUS_MEMBERS, "status"):
        assert member not in listed["notification"], member

    publish(context, changed("update", entity(pm25=70), entity()))
    assert len(receiver.wait(1)) == 1
    assert eventually(lambda: notification_of(api, auth, sub_id).get("timesSent") == 1)
    sent = notification_of(api, auth, sub_id)
    assert sent["timesSent"] == 1
    assert sent["timesFailed"] == 0  # a count once something was sent
    assert sent["status"] == "ok"
    assert sent["lastNotification"].endswith("Z")
    assert sent["lastSuccess"] == sent["lastNotification"]
    assert "lastFailure" not in sent


def test_a_failed_notification_shows_the_failure_members_only(
    api: TestClient,
    auth: H,
    context: AppContext,
    runtime: subscriptions.Runtime,
    make_receiver: Any,
) -> None:
    broken = make_receiver(fail_first=1000)
    sub_id = create(api, auth, subscription(broken.url))
    publish(context, changed("update", entity(pm25=71), entity()))
    assert eventually(lambda: notification_of(api, auth, sub_id).get("timesFailed", 0) >= 1)
    failed = notification_of(api, auth, sub_id)
    assert failed["timesSent"] >= failed["timesFailed"] >= 1
    assert failed["status"] == "failed"
    assert failed["lastFailure"] == failed["lastNotification"]
    assert "lastSuccess" not in failed


# -- the Link header of application/json replies (clause 6.3.5) -----------------------------------


def test_json_replies_name_the_context_in_a_link_header(api: TestClient, auth: H) -> None:
    sub_id = create(api, auth, subscription("http://127.0.0.1:9/n"))
    core_link = link(subscriptions.CORE_CONTEXT_URL)

    one = api.get(f"{SUBS}/{sub_id}", headers=auth)
    assert one.status_code == 200
    assert one.headers["content-type"].startswith("application/json")
    assert one.headers["Link"] == core_link
    assert "@context" not in one.json()

    listed = api.get(SUBS, params={"count": "true"}, headers=auth)
    assert listed.headers["Link"] == core_link
    assert listed.headers["NGSILD-Results-Count"] == "1"
    assert api.get(f"{SUBS}/", headers=auth).headers["Link"] == core_link

    # JSON-LD replies carry the @context in the body instead.
    for target in (f"{SUBS}/{sub_id}", SUBS):
        as_ld = api.get(target, headers={**auth, "Accept": LD})
        assert as_ld.headers["content-type"].startswith(LD)
        assert "Link" not in as_ld.headers
    assert api.get(f"{SUBS}/{sub_id}", headers={**auth, "Accept": LD}).json()["@context"] == (
        subscriptions.CORE_CONTEXT_URL
    )


def test_the_link_names_the_context_the_names_are_compacted_with(api: TestClient, auth: H) -> None:
    url = hosted_context(api, auth)
    doc = {**subscription("http://127.0.0.1:9/n"), "@context": [url]}
    reply = api.post(SUBS, content=orjson.dumps(doc), headers={**auth, "Content-Type": LD})
    assert reply.status_code == 201, reply.text
    sub_id = reply.headers["Location"].rsplit("/", 1)[-1]

    # The reply's names are compacted with the GET's @context (clause 5.8.2), so its Link
    # names that @context, else the core context, and so does the JSON-LD reply's body.
    core = link(subscriptions.CORE_CONTEXT_URL)
    assert api.get(f"{SUBS}/{sub_id}", headers=auth).headers["Link"] == core
    asked = api.get(f"{SUBS}/{sub_id}", headers={**auth, "Link": link(url)})
    assert asked.headers["Link"] == link(url)
    assert api.get(SUBS, headers=auth).headers["Link"] == core
    as_ld = api.get(f"{SUBS}/{sub_id}", headers={**auth, "Accept": LD}).json()
    assert as_ld["@context"] == subscriptions.CORE_CONTEXT_URL
    # read with the @context it was written with: the document and its @context as written
    as_ld = api.get(f"{SUBS}/{sub_id}", headers={**auth, "Accept": LD, "Link": link(url)}).json()
    assert as_ld["@context"] == [url]

    # A page of subscriptions written with different @contexts: the same rule.
    create(api, auth, subscription("http://127.0.0.1:9/other"))
    assert api.get(SUBS, headers=auth).headers["Link"] == core
    asked = api.get(SUBS, headers={**auth, "Link": link(url)})
    assert asked.headers["Link"] == link(url)
    assert len(asked.json()) == 2


# -- PATCH: notification is replaced as a whole (clauses 5.8.2, 5.5.8) ---------------------------


def test_patch_of_notification_without_endpoint_is_refused(api: TestClient, auth: H) -> None:
    doc = subscription(
        "http://127.0.0.1:9/n",
        notification={"endpoint": {"uri": "http://127.0.0.1:9/n"}, "attributes": ["pm25"]},
    )
    sub_id = create(api, auth, doc)
    before = api.get(f"{SUBS}/{sub_id}", headers=auth).json()
    json = {**auth, "Content-Type": "application/json"}
    merge = {**auth, "Content-Type": "application/merge-patch+json"}
    for fragment, headers in (
        ({"notification": {"format": "keyValues"}}, json),  # the ETSI suite's 029_03
        ({"type": "Subscription", "notification": {"format": "keyValues", "endpoint": None}}, json),
        ({"notification": {"format": "keyValues"}}, merge),
        ({"notification": {"endpoint": "http://127.0.0.1:9/n"}}, json),
    ):
        reply = api.patch(f"{SUBS}/{sub_id}", content=orjson.dumps(fragment), headers=headers)
        assert reply.status_code == 400, fragment
        problem = reply.json()
        assert problem["type"] == BAD_DATA
        assert "endpoint" in problem["detail"]
        assert "notification" in problem["detail"]
    assert api.get(f"{SUBS}/{sub_id}", headers=auth).json() == before

    # Removing the mandatory notification is refused too.
    reply = api.patch(f"{SUBS}/{sub_id}", json={"notification": None}, headers=auth)
    assert reply.status_code == 400
    assert "notification" in reply.json()["detail"]


def test_patch_replaces_the_whole_notification(api: TestClient, auth: H) -> None:
    doc = subscription(
        "http://127.0.0.1:9/n",
        notification={
            "endpoint": {"uri": "http://127.0.0.1:9/n", "accept": LD},
            "attributes": ["pm25"],
            "format": "concise",
        },
    )
    sub_id = create(api, auth, doc)
    fragment = {
        "notification": {"format": "keyValues", "endpoint": {"uri": "http://127.0.0.1:9/b"}}
    }
    reply = api.patch(f"{SUBS}/{sub_id}", json=fragment, headers=auth)
    assert reply.status_code == 204, reply.text
    shown = notification_of(api, auth, sub_id)
    assert shown["format"] == "keyValues"
    # What the new notification leaves out is gone or back to its default.
    assert "attributes" not in shown
    assert shown["endpoint"] == {"uri": "http://127.0.0.1:9/b", "accept": "application/json"}
    # Other members of the subscription stay as they were.
    assert api.get(f"{SUBS}/{sub_id}", headers=auth).json()["entities"] == doc["entities"]
