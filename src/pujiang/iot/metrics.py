"""Prometheus collectors of device ingest, on the app's registry (or one of the worker's own)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY_KEY = "ingest.registry"


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.messages = Counter(
            "pujiang_ingest_messages",
            "Device messages by transport and outcome (stored, duplicate, rejected)",
            ["transport", "outcome"],
            registry=registry,
        )
        self.received = Counter(
            "pujiang_ingest_received", "Device messages received", ["transport"], registry=registry
        )
        self.measures = Counter(
            "pujiang_ingest_measures",
            "Attribute readings by outcome (stored, history, duplicate)",
            ["outcome"],
            registry=registry,
        )
        self.rejections = Counter(
            "pujiang_ingest_rejections",
            "Rejected messages by reason",
            ["reason"],
            registry=registry,
        )
        self.lag = Histogram(
            "pujiang_ingest_lag_seconds",
            "From receipt of a message to its commit",
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch = Histogram(
            "pujiang_ingest_batch_seconds",
            "Time to convert and commit one batch",
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )


def registry_of(context: Any) -> CollectorRegistry:
    """The app's registry (served on /metrics) when there is an app, else the process's own."""
    metrics = context.extras.get("metrics")
    if metrics is not None:
        return metrics.registry  # type: ignore[no-any-return]
    registry = context.extras.get(REGISTRY_KEY)
    if registry is None:
        registry = CollectorRegistry()
        context.extras[REGISTRY_KEY] = registry
    return registry  # type: ignore[no-any-return]
