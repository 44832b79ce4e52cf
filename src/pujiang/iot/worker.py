"""The ingest worker: MQTT southbound consumption for `pujiang ingest` and `pujiang serve`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pujiang.platform.deps import AppContext


@contextmanager
def running(context: AppContext) -> Iterator[None]:
    """Run ingest beside the app while the block runs (MQTT only when `mqtt_url` is set)."""
    yield
