"""Latency from an entity update to the notification's arrival at a local HTTP receiver.

    .venv/bin/python bench/context_notify.py [--updates 300] [--database-url URL]

Measures, in one run:
- notify: `ContextBroker.update_attrs` (commit, bus event, matching, outbox row) until the
  receiver has the notification (delivery worker: claim, POST, delete) — p50/p95/p99/max;
- the update call alone (what the request path pays for the subscription machinery included);
- baseline: a direct httpx POST of the same payload to the same receiver.
Target: notify p95 < 100 ms. Prints the figures and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import http.server
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from pujiang.app import build_context
from pujiang.context import subscriptions
from pujiang.context.jsonld import DEFAULT_VOCAB
from pujiang.context.ngsild import broker_of
from pujiang.context.ngsild_subscriptions import compile_subscription
from pujiang.platform import db as dbtools
from pujiang.settings import Mode, Settings

PM25 = DEFAULT_VOCAB + "pm25"
TYPE = DEFAULT_VOCAB + "AirQualityObserved"


class Receiver:
    """Records the arrival time of every POST, by the `seq` value it carries."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.ready = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.perf_counter()
                body = orjson.loads(raw)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver.ready:
                    for item in body.get("data", []):
                        seq = item.get("pm25", {}).get("value")
                        if isinstance(seq, int):
                            receiver.arrived.setdefault(seq, now)
                    receiver.ready.notify_all()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/notify"

    def wait_for(self, seq: int, timeout: float = 10.0) -> float:
        deadline = time.perf_counter() + timeout
        with self.ready:
            while seq not in self.arrived:
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise TimeoutError(f"notification {seq} did not arrive")
                self.ready.wait(left)
            return self.arrived[seq]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def describe(name: str, millis: list[float]) -> str:
    return (
        f"{name:<22} n={len(millis):<5} p50={percentile(millis, 50):7.2f} ms  "
        f"p95={percentile(millis, 95):7.2f} ms  p99={percentile(millis, 99):7.2f} ms  "
        f"max={max(millis):7.2f} ms  mean={statistics.fmean(millis):7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pujiang-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    dbtools.upgrade(url)
    settings = Settings(
        mode=Mode.TEST,
        database_url=url,
        secret_key=secrets.token_urlsafe(48),
        var_dir=workdir / "var",
        log_json=False,
    )
    context = build_context(settings)
    receiver = Receiver()
    subscriptions.install(context)  # the matcher listens from here on
    broker = broker_of(context)
    doc = {
        "id": f"urn:ngsi-ld:Subscription:bench-{secrets.token_hex(4)}",
        "type": "Subscription",
        "entities": [{"type": "AirQualityObserved"}],
        "watchedAttributes": ["pm25"],
        "notification": {"endpoint": {"uri": receiver.url}, "attributes": ["pm25"]},
    }
    with context.db.session() as session:
        subscriptions.create(session, "", doc, compile_subscription(doc, None), None, "bench")
    entity_id = f"urn:ngsi-ld:AirQualityObserved:bench-{secrets.token_hex(4)}"
    broker.create("", {"id": entity_id, "type": [TYPE], PM25: [{"type": "Property", "value": -1}]})

    notify_ms: list[float] = []
    update_ms: list[float] = []
    with subscriptions.delivery(context):
        receiver.wait_for(-1)  # warm up: connections, caches
        for seq in range(args.updates):
            started = time.perf_counter()
            broker.update_attrs("", entity_id, {PM25: [{"type": "Property", "value": seq}]})
            update_ms.append((time.perf_counter() - started) * 1000)
            notify_ms.append((receiver.wait_for(seq) - started) * 1000)

    baseline_ms: list[float] = []
    payload = {"type": "Notification", "data": [{"id": entity_id, "pm25": {"value": -2}}]}
    with httpx.Client() as client:
        for seq in range(args.updates):
            payload["data"][0]["pm25"] = {"value": 1_000_000 + seq}
            started = time.perf_counter()
            client.post(receiver.url, content=orjson.dumps(payload))
            baseline_ms.append((receiver.wait_for(1_000_000 + seq) - started) * 1000)
    context.db.dispose()

    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"context_notify: {args.updates} sequential updates, {backend}, one HTTP subscription")
    print(describe("update -> notified", notify_ms))
    print(describe("update call alone", update_ms))
    print(describe("baseline httpx POST", baseline_ms))
    p95, base = percentile(notify_ms, 95), percentile(baseline_ms, 95)
    print(
        f"p95 ratio to baseline: {p95 / base:.1f}x; target p95 < 100 ms: "
        f"{'met' if p95 < 100 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
