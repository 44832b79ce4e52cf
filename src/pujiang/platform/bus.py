"""The event bus modules talk through: `alerts` publishes `alert.raised`, `cases` subscribes.

The embedded default delivers in-process and synchronously, after the publisher's transaction
has committed (publishers call `publish` after commit). A handler's failure is logged and
counted, never raised into the publisher. A broker-backed bus (NATS JetStream) implements the
same two methods when several nodes must share events.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("pujiang.bus")

Handler = Callable[[str, dict[str, Any]], None]


class EventBus(Protocol):
    def publish(self, topic: str, payload: dict[str, Any]) -> None: ...

    def subscribe(self, pattern: str, handler: Handler) -> None: ...


@dataclass
class InProcessBus:
    """Topics are dotted names; patterns may use shell wildcards (`alert.*`)."""

    handlers: list[tuple[str, Handler]] = field(default_factory=list)
    delivered: int = 0
    failed: int = 0

    def subscribe(self, pattern: str, handler: Handler) -> None:
        self.handlers.append((pattern, handler))

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        for pattern, handler in list(self.handlers):
            if not fnmatch.fnmatchcase(topic, pattern):
                continue
            try:
                handler(topic, payload)
                self.delivered += 1
            except Exception:
                self.failed += 1
                log.exception("bus handler for %s failed on %s", pattern, topic)
