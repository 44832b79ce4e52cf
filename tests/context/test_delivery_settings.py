"""The operator's notification delivery settings (`context_notify_*`) reach the app's delivery
worker: a dead endpoint is given up on after the configured number of sends."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from pujiang.context import subscriptions
from pujiang.context.subscription_models import NotificationOutbox
from pujiang.platform.deps import AppContext
from pujiang.settings import Settings
from tests.context import test_subscriptions as shared
from tests.context.test_subscriptions import SUBS, Receiver, changed, create, entity, publish
from tests.context.test_subscriptions import subscription as subscription_doc

api = shared.api
auth = shared.auth
make_receiver = shared.make_receiver

TUNED = {
    "context_notify_timeout": 2.0,
    "context_notify_max_attempts": 2,
    "context_notify_backoff_base": 0.05,
    "context_notify_backoff_max": 0.1,
    "context_notify_per_endpoint": 2,
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=TUNED)


def test_the_app_delivers_with_the_configured_settings(
    api: Any, auth: dict[str, str], context: AppContext, make_receiver: Any
) -> None:
    config = subscriptions.install(context).dispatcher.config
    assert (config.timeout, config.max_attempts, config.per_endpoint_concurrency) == (2.0, 2, 2)
    assert (config.backoff_base, config.backoff_max) == (0.05, 0.1)
    broken: Receiver = make_receiver(fail_first=1000)
    sub_id = create(api, auth, subscription_doc(broken.url))
    publish(context, changed("update", entity(pm25=80), entity()))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        notification = api.get(f"{SUBS}/{sub_id}", headers=auth).json()["notification"]
        if notification.get("timesFailed") == 2:
            break
        time.sleep(0.05)
    assert notification["timesFailed"] == 2
    time.sleep(0.3)  # no third send after the backoff: given up
    assert broken.requests == 2
    with context.db.session() as session:
        [row] = session.scalars(select(NotificationOutbox)).all()
        assert row.dead


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("context_notify_timeout", 0),
        ("context_notify_max_attempts", 0),
        ("context_notify_backoff_base", -1),
        ("context_notify_per_endpoint", 1000),
    ],
)
def test_bad_delivery_settings_are_refused(tmp_path: Path, name: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings(database_url=f"sqlite:///{tmp_path}/x.db", **{name: value})


def test_a_backoff_cap_below_its_start_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="context_notify_backoff_max must not be below"):
        Settings(
            database_url=f"sqlite:///{tmp_path}/x.db",
            context_notify_backoff_base=60,
            context_notify_backoff_max=10,
        )
