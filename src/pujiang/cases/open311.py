"""Open311 GeoReport v2 at /open311/v2, with mySociety's `servicerequestupdates`.

An adapter: it translates the protocol to and from `cases.service` and nothing else knows the
protocol exists. Replies are JSON or XML after the path's `.json`/`.xml` suffix; errors are the
spec's list of {code, description}, never problem+json. Reads are public (what the spec
expects of a city); writing needs a service account's API key with `cases.create`, sent as the
spec's `api_key` form field (or the X-API-Key header).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from pujiang.cases import service
from pujiang.cases.models import Case, CaseCategory, CaseEvent, CaseFile
from pujiang.cases.service import NewCase, Source
from pujiang.cases.workflow import STATE_TITLES, State
from pujiang.platform import identity
from pujiang.platform.deps import AppContext, Context, principal_from_api_key, public
from pujiang.platform.errors import Problem
from pujiang.platform.identifiers import IdentifierError, normalise_mobile
from pujiang.platform.models import Department
from pujiang.platform.roles import CASES_CREATE
from pujiang.platform.workcal import SHANGHAI

PREFIX = "/open311/v2"
SPEC = "http://wiki.open311.org/GeoReport_v2"
FORMATS = {"json": "application/json", "xml": "text/xml"}
WINDOW = timedelta(days=90)
MAX_REQUESTS = 1000

router = APIRouter(prefix=PREFIX, tags=["Open311 GeoReport v2"])

# Our states as Open311 sees them: open/closed, and mySociety's extended statuses.
OPEN_STATES = frozenset(
    {State.REPORTED, State.REGISTERED, State.DISPATCHED, State.HANDLING, State.HANDLED}
)
EXTENDED: dict[State, str] = {
    State.REPORTED: "open",
    State.REGISTERED: "investigating",
    State.DISPATCHED: "action_scheduled",
    State.HANDLING: "in_progress",
    State.HANDLED: "in_progress",
    State.VERIFIED: "fixed",
    State.CLOSED: "fixed",
    State.EVALUATED: "fixed",
    State.REJECTED: "no_further_action",
    State.MERGED: "duplicate",
}
SERVICE_NOTICE = (
    "工作时间内处理，可凭 token 查询进度 / handled in working hours; follow it with the token"
)


class Open311Error(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


# -- rendering --------------------------------------------------------------------------------

# Element names of list items in XML, after the spec's examples.
_ITEM_TAGS = {
    "services": "service",
    "service_requests": "request",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
    "errors": "error",
    "service_request_updates": "request_update",
}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _element(tag: str, value: Any) -> ET.Element:
    node = ET.Element(tag)
    if isinstance(value, Mapping):
        for key, inner in value.items():
            node.append(_element(key, inner))
    elif isinstance(value, list):
        child = _ITEM_TAGS.get(tag, "item")
        for inner in value:
            node.append(_element(child, inner))
    else:
        node.text = _text(value)
    return node


def render(fmt: str, root: str, data: Any, status: int = 200) -> Response:
    if fmt == "xml":
        body = ET.tostring(_element(root, data), encoding="utf-8", xml_declaration=True)
        return Response(body, status_code=status, media_type="text/xml; charset=utf-8")
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error(fmt: str, code: int, description: str) -> Response:
    return render(
        fmt if fmt in FORMATS else "json",
        "errors",
        [{"code": code, "description": description}],
        code,
    )


def _format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise Open311Error(400, f"format must be json or xml, not {fmt!r} / 格式须为 json 或 xml")
    return fmt


def _when(value: datetime | None) -> str | None:
    return value.astimezone(SHANGHAI).isoformat(timespec="seconds") if value else None


def _parse_when(name: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(
            400, f"{name} must be a W3C datetime such as 2024-01-01T00:00:00Z / {name} 时间格式无效"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=SHANGHAI)


# -- translating ------------------------------------------------------------------------------


def _service(row: CaseCategory) -> dict[str, Any]:
    return {
        "service_code": row.code,
        "service_name": row.name,
        "description": row.register_standard,
        "metadata": bool(row.attributes),
        "type": "realtime",
        "keywords": row.keywords,
        "group": f"{'部件' if row.kind == 'component' else '事件'}·{row.major_name}",
    }


def _definition(row: CaseCategory) -> dict[str, Any]:
    attributes = []
    for order, attr in enumerate(row.attributes or [], start=1):
        item: dict[str, Any] = {
            "variable": True,
            "code": attr["code"],
            "datatype": attr.get("datatype", "string"),
            "required": bool(attr.get("required")),
            "datatype_description": attr.get("datatype_description", ""),
            "order": order,
            "description": attr["description"],
        }
        if attr.get("values"):
            item["values"] = [{"key": v["key"], "name": v["name"]} for v in attr["values"]]
        attributes.append(item)
    return {"service_code": row.code, "attributes": attributes}


def _request(case: Case, category: CaseCategory, agency: str, media: str | None) -> dict[str, Any]:
    state = State(case.state)
    notes = case.result if state in (State.VERIFIED, State.CLOSED, State.EVALUATED) else ""
    return {
        "service_request_id": str(case.id),
        "status": "open" if state in OPEN_STATES else "closed",
        "status_notes": notes or STATE_TITLES[state][0],
        "service_name": category.name,
        "service_code": category.code,
        "description": case.description,
        "agency_responsible": agency,
        "service_notice": "",
        "requested_datetime": _when(case.created_at),
        "updated_datetime": _when(case.updated_at),
        "expected_datetime": _when(case.handle_deadline or case.stage_deadline)
        if state in OPEN_STATES
        else None,
        "address": case.address or case.place_name,
        "address_id": str(case.attributes.get("address_id", "")) if case.attributes else "",
        "zipcode": "",
        "lat": case.lat,
        "long": case.lon,
        "media_url": media or "",
        "extended_status": EXTENDED[state],
    }


def _requests(session: Session, cases: list[Case]) -> list[dict[str, Any]]:
    categories = {row.id: row for row in session.scalars(select(CaseCategory))}
    departments = {
        row.id: row.name
        for row in session.scalars(
            select(Department).where(Department.id.in_({c.department_id for c in cases}))
        )
    }
    media: dict[int, str] = {}
    if cases:
        for case_id, url in session.execute(
            select(CaseFile.case_id, CaseFile.url)
            .where(CaseFile.case_id.in_([c.id for c in cases]), CaseFile.url.is_not(None))
            .order_by(CaseFile.id)
        ):
            media.setdefault(case_id, url or "")
    return [
        _request(
            c, categories[c.category_id], departments.get(c.department_id or 0, ""), media.get(c.id)
        )
        for c in cases
    ]


_ATTRIBUTE = re.compile(r"^attribute\[([A-Za-z0-9_]+)\](\[\])?$")


def _attributes(form: FormData, category: CaseCategory) -> dict[str, Any]:
    given: dict[str, Any] = {}
    for key, item in form.multi_items():
        match = _ATTRIBUTE.match(key)
        if match and isinstance(item, str):
            code = str(match.group(1))
            if match.group(2):
                given.setdefault(code, []).append(item)
            else:
                given[code] = item
    known = {a["code"]: a for a in category.attributes or []}
    for code, attr in known.items():
        value: Any = given.get(code)
        if attr.get("required") and not value:
            raise Open311Error(400, f"attribute[{code}] is required / 缺少必填属性 {code}")
        keys = {v["key"] for v in attr.get("values") or []}
        chosen = value if isinstance(value, list) else [value] if value else []
        if keys and any(v not in keys for v in chosen):
            raise Open311Error(
                400, f"attribute[{code}] must be one of {', '.join(sorted(keys))} / 属性值无效"
            )
        if attr.get("datatype") == "number" and value:
            try:
                float(str(value))
            except ValueError:
                raise Open311Error(
                    400, f"attribute[{code}] must be a number / 属性须为数字"
                ) from None
    return {k: v for k, v in given.items() if k in known}


def _float(form: FormData, name: str, low: float, high: float) -> float | None:
    raw = form.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(str(raw))
    except ValueError:
        raise Open311Error(400, f"{name} must be a number / {name} 须为数字") from None
    if not low <= value <= high:
        raise Open311Error(400, f"{name} must be between {low} and {high} / {name} 超出范围")
    return value


def _field(form: FormData, name: str, limit: int) -> str:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if len(text) > limit:
        raise Open311Error(400, f"{name} is longer than {limit} characters / {name} 过长")
    return text


def _phone(raw: str) -> str | None:
    if not raw:
        return None
    digits = raw.replace("-", "").replace(" ", "")
    try:
        return normalise_mobile(digits)
    except IdentifierError:
        if digits.isdigit() and 7 <= len(digits) <= 12:
            return digits
    raise Open311Error(400, "phone is not a phone number / 电话号码无效")


def _name(first: str, last: str) -> str | None:
    if not (first or last):
        return None
    # Chinese names put the family name first and use no space.
    if any("\u4e00" <= ch <= "\u9fff" for ch in first + last):
        return f"{last}{first}"
    return f"{first} {last}".strip()


def create_request(context: AppContext, form: FormData, header_key: str | None) -> dict[str, Any]:
    key = _field(form, "api_key", 200) or (header_key or "")
    # One transaction for the key and the case: the key's `last_used_at` commits with the case
    # (a second commit per request was most of the avoidable cost of this path).
    with context.db.session() as session:
        return _create_in(session, context, form, key)


def _create_in(session: Session, context: AppContext, form: FormData, key: str) -> dict[str, Any]:
    principal = principal_from_api_key(session, key) if key else None
    if principal is None:
        raise Open311Error(403, "api_key is missing or invalid / api_key 无效")
    current = identity.current_of(principal)
    if not current.can(CASES_CREATE):
        raise Open311Error(403, "api_key is missing or invalid / api_key 无效")
    code = _field(form, "service_code", 16)
    if not code:
        raise Open311Error(400, "service_code is required / 缺少 service_code")
    lat = _float(form, "lat", -90, 90)
    lon = _float(form, "long", -180, 180)
    address = _field(form, "address_string", 255)
    address_id = _field(form, "address_id", 128)
    if (lat is None or lon is None) and not address and not address_id:
        raise Open311Error(
            400, "a location is required: lat and long, address_string or address_id / 需要位置"
        )
    email = _field(form, "email", 255)
    if email and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email):
        raise Open311Error(400, "email is not an e-mail address / 邮箱无效")
    media_url = _field(form, "media_url", 1024)
    if media_url and not media_url.startswith(("http://", "https://")):
        raise Open311Error(400, "media_url must be an http(s) URL / media_url 须为网址")
    try:
        category = service.get_category(session, code)
    except Problem:
        raise Open311Error(404, f"service_code {code} not found / 服务类型不存在") from None
    attributes = _attributes(form, category)
    if address_id:
        attributes["address_id"] = address_id
    for extra in ("device_id", "account_id"):
        if value := _field(form, extra, 128):
            attributes[extra] = value
    new = NewCase(
        category_code=code,
        source=Source.OPEN311,
        description=_field(form, "description", 4000),
        address=address,
        lon=lon if lat is not None else None,
        lat=lat if lon is not None else None,
        reporter_name=_name(_field(form, "first_name", 32), _field(form, "last_name", 32)),
        reporter_phone=_phone(_field(form, "phone", 32)),
        reporter_email=email or None,
        attributes=attributes,
        external_ref=f"address:{address_id}" if address_id else None,
        media_urls=[media_url] if media_url else [],
    )
    case = service.create_case(session, context, current, new, category=category)
    return {
        "service_request_id": str(case.id),
        "token": case.tracking_id,
        "service_notice": SERVICE_NOTICE,
        "account_id": attributes.get("account_id"),
    }


# -- routes -----------------------------------------------------------------------------------

Public = Annotated[None, Depends(public)]


def _guarded(fmt: str, root: str, produce: Any) -> Response:
    try:
        return render(_format(fmt), root, produce())
    except Open311Error as exc:
        return error(fmt, exc.code, exc.description)
    except Problem as exc:
        return error(fmt, 400 if exc.status == 422 else exc.status, exc.detail)


@router.get("/discovery.{fmt}", summary="Open311 discovery")
def discovery(fmt: str, request: Request, _: Public) -> Response:
    base = str(request.base_url).rstrip("/") + PREFIX

    def produce() -> dict[str, Any]:
        return {
            "changeset": "2024-01-01T00:00:00+08:00",
            "contact": "12345 市民服务热线 / 12345 citizen service hotline",
            "key_service": (
                "向城市运行管理中心申请服务账户 API key / ask the operations center for an API key"
            ),
            "endpoints": [
                {
                    "specification": SPEC,
                    "url": base,
                    "changeset": "2024-01-01T00:00:00+08:00",
                    "type": "production",
                    "formats": list(FORMATS.values()),
                }
            ],
        }

    return _guarded(fmt, "discovery", produce)


@router.get("/services.{fmt}", summary="Open311 service list")
def services(fmt: str, context: Context, _: Public) -> Response:
    def produce() -> list[dict[str, Any]]:
        with context.db.session() as session:
            return [_service(row) for row in service.list_categories(session)]

    return _guarded(fmt, "services", produce)


@router.get("/services/{service_code}.{fmt}", summary="Open311 service definition")
def service_definition(service_code: str, fmt: str, context: Context, _: Public) -> Response:
    def produce() -> dict[str, Any]:
        with context.db.session() as session:
            try:
                row = service.get_category(session, service_code)
            except Problem:
                raise Open311Error(
                    404, f"service_code {service_code} not found / 服务类型不存在"
                ) from None
            return _definition(row)

    return _guarded(fmt, "service_definition", produce)


@router.post("/requests.{fmt}", summary="Open311 create a service request")
async def post_request(fmt: str, request: Request, context: Context, _: Public) -> Response:
    try:
        _format(fmt)
        form = await request.form()
    except Open311Error as exc:
        return error(fmt, exc.code, exc.description)
    except Exception:  # a malformed body
        return error(
            fmt, 400, "the body must be application/x-www-form-urlencoded / 请求体格式无效"
        )
    header_key = request.headers.get("x-api-key")
    try:
        created = await run_in_threadpool(create_request, context, form, header_key)
    except Open311Error as exc:
        return error(fmt, exc.code, exc.description)
    except Problem as exc:
        return error(fmt, 400 if exc.status == 422 else exc.status, exc.detail)
    return render(fmt, "service_requests", [created])


@router.get("/requests.{fmt}", summary="Open311 service requests")
def get_requests(fmt: str, request: Request, context: Context, _: Public) -> Response:
    params = request.query_params

    def produce() -> list[dict[str, Any]]:
        query = select(Case).order_by(Case.created_at.desc(), Case.id.desc()).limit(MAX_REQUESTS)
        ids = [i.strip() for i in (params.get("service_request_id") or "").split(",") if i.strip()]
        with context.db.session() as session:
            if ids:
                if not all(i.isdigit() for i in ids):
                    raise Open311Error(400, "service_request_id must be numbers / 编号须为数字")
                query = query.where(Case.id.in_([int(i) for i in ids]))
                return _requests(session, list(session.scalars(query)))
            codes = [c.strip() for c in (params.get("service_code") or "").split(",") if c.strip()]
            if codes:
                query = query.join(CaseCategory, CaseCategory.id == Case.category_id).where(
                    CaseCategory.code.in_(codes)
                )
            start = _parse_when("start_date", params.get("start_date"))
            end = _parse_when("end_date", params.get("end_date"))
            if start and end and end - start > WINDOW:
                raise Open311Error(
                    400, "start_date to end_date may span at most 90 days / 最多 90 天"
                )
            end = end or (start + WINDOW if start else service.now(context))
            start = start or end - WINDOW
            query = query.where(Case.created_at >= start, Case.created_at <= end)
            statuses = {s.strip() for s in (params.get("status") or "").split(",") if s.strip()}
            if statuses - {"open", "closed"}:
                raise Open311Error(
                    400, "status must be open or closed / status 须为 open 或 closed"
                )
            if statuses == {"open"}:
                query = query.where(Case.state.in_([s.value for s in OPEN_STATES]))
            elif statuses == {"closed"}:
                query = query.where(Case.state.not_in([s.value for s in OPEN_STATES]))
            return _requests(session, list(session.scalars(query)))

    return _guarded(fmt, "service_requests", produce)


@router.get("/requests/{service_request_id}.{fmt}", summary="Open311 one service request")
def get_request(service_request_id: str, fmt: str, context: Context, _: Public) -> Response:
    def produce() -> list[dict[str, Any]]:
        case = None
        with context.db.session() as session:
            if service_request_id.isdigit():
                case = session.get(Case, int(service_request_id))
            if case is None:
                raise Open311Error(
                    404, f"service_request_id {service_request_id} not found / 不存在"
                )
            return _requests(session, [case])

    return _guarded(fmt, "service_requests", produce)


@router.get("/tokens/{token}.{fmt}", summary="Open311 service request id from a token")
def get_token(token: str, fmt: str, context: Context, _: Public) -> Response:
    def produce() -> list[dict[str, Any]]:
        with context.db.session() as session:
            try:
                case = service.get_by_tracking(session, token.strip().upper())
            except Problem:
                raise Open311Error(404, f"token {token} not found / token 不存在") from None
            return [{"service_request_id": str(case.id), "token": case.tracking_id}]

    return _guarded(fmt, "service_requests", produce)


@router.get("/servicerequestupdates.{fmt}", summary="mySociety: updates to service requests")
def get_updates(fmt: str, request: Request, context: Context, _: Public) -> Response:
    params = request.query_params

    def produce() -> list[dict[str, Any]]:
        end = _parse_when("end_date", params.get("end_date")) or service.now(context)
        start = _parse_when("start_date", params.get("start_date")) or end - timedelta(days=1)
        if end - start > WINDOW:
            raise Open311Error(400, "start_date to end_date may span at most 90 days / 最多 90 天")
        with context.db.session() as session:
            rows = session.execute(
                select(CaseEvent, Case.result)
                .join(Case, Case.id == CaseEvent.case_id)
                .where(
                    CaseEvent.public.is_(True),
                    CaseEvent.action != "report",
                    CaseEvent.at >= start,
                    CaseEvent.at <= end,
                )
                .order_by(CaseEvent.at, CaseEvent.id)
                .limit(MAX_REQUESTS)
            ).all()
            out = []
            for event, result in rows:
                state = State(event.to_state)
                words = STATE_TITLES[state]
                text = f"{words[0]} / {words[1]}"
                if event.action in ("feedback", "reject") and (event.note or result):
                    text += f"：{event.note or result}"
                out.append(
                    {
                        "update_id": str(event.id),
                        "service_request_id": str(event.case_id),
                        "status": EXTENDED[state],
                        "updated_datetime": _when(event.at),
                        "description": text,
                        "media_url": "",
                        "external_status_code": event.action,
                    }
                )
            return out

    return _guarded(fmt, "service_request_updates", produce)
