"""Southbound HTTP adapter: `POST /iot/json?k=&i=` (IoT Agent JSON) and `POST /iot/bulk`.

Devices authenticate with their service group's API key (`k`), as IoT Agent JSON devices do;
these routes are therefore open to callers without a platform token (`public`) and check the
key themselves. They are exempt from the request audit log: device traffic is counted per
device and in the metrics instead.

The bulk endpoint is for gateways and batch uploads: a JSON array, or NDJSON (one JSON object a
line), of observations `{"k": apikey, "i": device_id, "t": time, "m": {measures}}`; `k` may be
given once in the query instead. All accepted observations are written in one transaction; the
reply counts them and lists the rejected ones by position.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from pujiang.iot.mapping import PayloadError
from pujiang.iot.service import REJECTED, IngestReport, Message, Outcome, ingestor_of
from pujiang.platform.deps import public
from pujiang.platform.errors import Problem

router = APIRouter(tags=["iot"])

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
# How a refused single message answers (IoT Agent JSON answers an unknown group with 404).
STATUS_OF_REASON = {"bad_apikey": 404, "unknown_device": 404, "too_large": 413}
SLUG_OF_STATUS = {400: "bad-request", 404: "not-found", 413: "payload-too-large"}

ApiKey = Annotated[str, Query(alias="k", min_length=1, max_length=64, description="API key")]
DeviceId = Annotated[str, Query(alias="i", min_length=1, max_length=128, description="device id")]


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _refused(outcome: Outcome) -> Problem:
    status = STATUS_OF_REASON.get(outcome.reason or "", 400)
    return Problem(status, SLUG_OF_STATUS[status], outcome.detail or "", reason=outcome.reason)


@router.post(
    "/iot/json",
    summary="设备上报（IoT Agent JSON）/ Device measures (IoT Agent JSON)",
    dependencies=[Depends(public)],
)
async def measures(request: Request, k: ApiKey, i: DeviceId) -> Response:
    """一条设备消息：JSON 对象 {object_id: 值}，可含 TimeInstant / One device message."""
    body = await request.body()
    message = Message(k, i, body, transport="http")
    report = await run_in_threadpool(ingestor_of(request.app.state.pujiang).ingest, [message])
    outcome = report.outcomes[0]
    if outcome.status == REJECTED:
        raise _refused(outcome)
    return _json({"status": outcome.status})


def _items(body: bytes, content_type: str) -> list[Any]:
    """The observations of a bulk body, as parsed JSON values (not yet checked)."""
    if not body.strip():
        raise Problem(400, "bad-request", "请求体为空 / the request body is empty")
    if content_type in NDJSON_TYPES:
        items: list[Any] = []
        for number, line in enumerate(body.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise Problem(
                    400,
                    "bad-request",
                    f"第 {number} 行不是合法的 JSON：{exc} / line {number} is not valid JSON",
                ) from exc
        return items
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(
            400, "bad-request", f"请求体不是合法的 JSON：{exc} / the body is not valid JSON"
        ) from exc
    if not isinstance(parsed, list):
        raise Problem(
            400,
            "bad-request",
            "批量上报须为观测数组（或 NDJSON）/ a bulk upload must be a JSON array of "
            "observations (or NDJSON)",
        )
    return parsed


def _message(item: Any, apikey: str | None) -> Message:
    if not isinstance(item, dict):
        raise PayloadError("bad_item", "观测须为 JSON 对象 / an observation must be an object")
    key = item.get("k", apikey)
    device = item.get("i")
    measures = item.get("m")
    if not isinstance(key, str) or not key:
        raise PayloadError("bad_apikey", "观测缺少 API 密钥 k / the observation has no API key k")
    if not isinstance(device, str) or not device:
        raise PayloadError("bad_item", "观测缺少设备编号 i / the observation has no device id i")
    if not isinstance(measures, dict):
        raise PayloadError(
            "not_an_object", "观测的 m 须为 JSON 对象 / the observation's m must be an object"
        )
    return Message(key, device, measures, observed_at=item.get("t"), transport="bulk")


def bulk_ingest(context: Any, items: list[Any], apikey: str | None) -> dict[str, Any]:
    """Check every item, ingest the well-formed ones in one call, report all of them."""
    messages: list[Message] = []
    positions: list[int] = []
    outcomes: list[Outcome | None] = [None] * len(items)
    for index, item in enumerate(items):
        try:
            messages.append(_message(item, apikey))
            positions.append(index)
        except PayloadError as exc:
            outcomes[index] = Outcome(REJECTED, exc.reason, exc.detail)
    ingestor = ingestor_of(context)
    report = ingestor.ingest(messages) if messages else IngestReport([])
    for index, outcome in zip(positions, report.outcomes, strict=True):
        outcomes[index] = outcome
    done = [o or Outcome(REJECTED) for o in outcomes]
    errors = [
        {"index": n, "reason": o.reason, "detail": o.detail}
        for n, o in enumerate(done)
        if o.status == REJECTED
    ]
    whole = IngestReport(done)
    return {
        "received": len(done),
        "stored": whole.stored,
        "duplicates": whole.duplicates,
        "rejected": whole.rejected,
        "errors": errors,
    }


@router.post(
    "/iot/bulk",
    summary="批量上报 / Bulk device observations (JSON array or NDJSON)",
    dependencies=[Depends(public)],
)
async def bulk(
    request: Request,
    k: Annotated[str | None, Query(max_length=64, description="API key for every item")] = None,
) -> Response:
    """网关与批量上传：观测数组或 NDJSON，每条 {k, i, t, m} / Gateways and batch uploads."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    items = _items(body, content_type)
    reply = await run_in_threadpool(bulk_ingest, request.app.state.pujiang, items, k)
    return _json(reply)


for _route in router.routes:
    # Device traffic is counted per device and in the metrics, not in the audit log.
    _route.audit_exempt = True  # type: ignore[attr-defined]
