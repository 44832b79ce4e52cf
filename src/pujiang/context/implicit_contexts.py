"""ImplicitlyCreated @contexts (clause 5.13): a subscription written with an @context that is
not one URL (several URLs, or an inline object) gets a stored copy of that @context, so its
`jsonldContext` can name it by one dereferenceable URL.

The entry is kept like a Hosted one (served, listed with `kind=ImplicitlyCreated`, deleted by
its local id, not reloaded). Subscriptions written with the same @context share one entry.
Notifications keep being compacted with the subscription's own @context, so deleting the entry
only takes the `jsonldContext` member out of the subscription's representation.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from pujiang.context.models import ContextJsonld
from pujiang.context.ngsild import context_path

KIND = "ImplicitlyCreated"


def key(ld_context: Any) -> str:
    """The stored form, by which entries are found: the same `{"@context": ...}` document a
    Hosted entry holds."""
    return orjson.dumps({"@context": ld_context}).decode()


def ensure(session: Session, base_url: str, ld_context: Any) -> str:
    """The URL of the ImplicitlyCreated entry holding `ld_context`, added in `session` (the
    subscription's own transaction) when there is none yet."""
    body = key(ld_context)
    found = session.scalars(
        select(ContextJsonld.url).where(ContextJsonld.kind == KIND, ContextJsonld.body == body)
    ).first()
    if found is not None:
        return found
    local_id = secrets.token_hex(12)
    url = f"{base_url.rstrip('/')}{context_path(local_id)}"
    session.add(
        ContextJsonld(
            id=local_id,
            tenant="",
            url=url,
            kind=KIND,
            body=body,
            created_at=datetime.now(UTC),
            hits=0,
        )
    )
    session.flush()
    return url


def urls_of(session: Session, contexts: Iterable[Any]) -> dict[str, str]:
    """For the given @contexts, the URL of their ImplicitlyCreated entry, keyed by
    `key(ld_context)`; an @context without one (never implicit, or deleted) is absent."""
    wanted = {key(c) for c in contexts if c is not None}
    if not wanted:
        return {}
    rows = session.execute(
        select(ContextJsonld.body, ContextJsonld.url).where(
            ContextJsonld.kind == KIND, ContextJsonld.body.in_(wanted)
        )
    )
    return {row.body: row.url for row in rows}
