"""Temporal evolution of entities (ETSI GS CIM 009 v1.8: clauses 4.5.7-4.5.9, 4.5.19, 4.11,
5.6.11-5.6.16, 5.7.3-5.7.4, 6.3.10) over the history (`context_history` rows in their
`context_series`, read through `models.history_rows()`).

No HTTP here (that is `ngsild_temporal.py`) and no JSON-LD: names are expanded IRIs, entities
are in the internal form (docs/context.md) with every attribute a list of *instances over time*.

History rows are written by the broker on every change (`store.py`, `readings.py`, through
`history.py`) and by the temporal API itself. A row's `modified_at` is the time it was
recorded: it is the instance's `createdAt` and, until the instance is modified through the
temporal API, its `modifiedAt`. Deletions are rows
with `deleted` set; they are the only instances `timeproperty=deletedAt` sees.
"""

from __future__ import annotations

import math
import re
import statistics
from calendar import monthrange
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    delete,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from pujiang.context import ngsild_scope
from pujiang.context.entity_form import index_value, parse_time
from pujiang.context.errors import BadData, NotFound, TooManyResults
from pujiang.context.history import HISTORY, delete_rows, series_of
from pujiang.context.jsonld import instance_value
from pujiang.context.models import (
    ContextEntity,
    ContextEntityType,
    history_rows,
)
from pujiang.context.ngsild_q import QExpr, evaluate
from pujiang.context.queries import (
    GeoQueryLike,
    Selector,
    geo_matches,
    literal_prefix,
    scope_clause,
)
from pujiang.context.service import ContextBroker

__all__ = [
    "AGGREGATION_METHODS",
    "DEFAULT_PAGE_SIZE",
    "INSTANCE_ID_PREFIX",
    "TIME_PROPERTIES",
    "Duration",
    "TemporalPage",
    "TemporalQuery",
    "TemporalStore",
    "aggregate",
    "iso",
    "parse_duration",
    "parse_temporal_query",
]

TIME_PROPERTIES = ("observedAt", "createdAt", "modifiedAt", "deletedAt")
TIMERELS = ("before", "after", "between")
AGGREGATION_METHODS = (
    "totalCount",
    "distinctCount",
    "sum",
    "avg",
    "min",
    "max",
    "stddev",
    "sumsq",
)
INSTANCE_ID_PREFIX = "urn:ngsi-ld:attribute:instance:"
# Clause 6.3.10: at most this many instances of one attribute in one response (206 beyond);
# the setting `context_temporal_page_size` chooses it per app.
DEFAULT_PAGE_SIZE = 1000
MAX_LIMIT = 1000
MAX_PERIODS = 100_000
CHUNK = 200

_H = history_rows()
_E = cast(Table, ContextEntity.__table__)
_T = cast(Table, ContextEntityType.__table__)

Entity = dict[str, Any]
Instance = dict[str, Any]


def iso(moment: datetime) -> str:
    """A UTC time as NGSI-LD writes it: 2026-11-24T01:00:00.000Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _bad(message: str, **detail: Any) -> BadData:
    return BadData(message, **detail)


# --------------------------------------------------------------------------------------------
# durations (ISO 8601, clause 4.5.19.1)

_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+(?:[.,]\d+)?)W|"
    r"(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<days>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:[.,]\d+)?)H)?(?:(?P<minutes>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?)"
)


@dataclass(frozen=True)
class Duration:
    """Calendar months (years x 12 + months) plus an exact time span."""

    months: int = 0
    span: timedelta = timedelta(0)

    @property
    def is_zero(self) -> bool:
        return self.months == 0 and self.span == timedelta(0)

    def after(self, moment: datetime) -> datetime:
        """`moment` plus this duration (months first, clamped to the month's last day)."""
        if self.months:
            total = moment.month - 1 + self.months
            year, month = moment.year + total // 12, total % 12 + 1
            day = min(moment.day, monthrange(year, month)[1])
            moment = moment.replace(year=year, month=month, day=day)
        return moment + self.span


def parse_duration(text: str) -> Duration:
    """P[n]Y[n]M[n]DT[n]H[n]M[n]S or P[n]W; raises BadData."""
    m = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise _bad(
            f"aggrPeriodDuration 不是 ISO 8601 时长：{text!r} / aggrPeriodDuration is not an "
            f"ISO 8601 duration such as PT1H, P1D or P1W: {text!r}"
        )
    parts = {k: float(v.replace(",", ".")) for k, v in m.groupdict().items() if v is not None}
    months = int(parts.get("years", 0)) * 12 + int(parts.get("months", 0))
    try:
        span = timedelta(
            weeks=parts.get("weeks", 0),
            days=parts.get("days", 0),
            hours=parts.get("hours", 0),
            minutes=parts.get("minutes", 0),
            seconds=parts.get("seconds", 0),
        )
    except OverflowError:
        raise _bad(f"aggrPeriodDuration 过长 / aggrPeriodDuration {text!r} is too long") from None
    return Duration(months, span)


# --------------------------------------------------------------------------------------------
# the query


@dataclass
class TemporalQuery:
    """A temporal query on expanded names (clause 5.7.4 / 6.18.3.2)."""

    timerel: str | None = None
    time_at: datetime | None = None
    end_time_at: datetime | None = None
    timeproperty: str = "observedAt"
    last_n: int | None = None
    attrs: list[str] | None = None
    # A type selection in disjunctive normal form (`A,B` two sets, `A;B` one set of two).
    types: list[frozenset[str]] | None = None
    ids: list[str] | None = None
    id_pattern: str | None = None
    # Several entity selectors (a POST query's `entities`): an entity matching any of them.
    selectors: list[Selector] | None = None
    q: QExpr | None = None
    # Decided on the entity's current state (location, scope), not on its history; an entity
    # without current state is located by its GeoProperty's instances in the window.
    geo: GeoQueryLike | None = None
    scope: ngsild_scope.ScopeExpr | None = None
    aggr_methods: list[str] | None = None
    aggr_period: Duration | None = None
    # The aggregated representation was asked for (options/format aggregatedValues): only then
    # do aggrMethods and aggrPeriodDuration apply (clause 4.5.19; they are validated anyway).
    aggregated: bool = False
    limit: int = 20
    offset: int = 0
    count: bool = False
    sys_attrs: bool = False
    # Which instances of the selected entities a reply carries; none of these takes part in
    # selecting the entities (clause 5.7.4.4 applies them to the result set):
    # `pick`/`omit` (clause 4.21) as attribute IRIs (None: every attribute) ...
    pick_attrs: list[str] | None = None
    omit_attrs: list[str] | None = None
    # ... and the `datasetId` parameter (clause 4.5.5): "" is the default instance ("@none").
    datasets: list[str] | None = None


def _time_param(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = parse_time(value.strip())
    if parsed is None or "T" not in value:
        raise _bad(
            f"{name} 必须是 ISO 8601 日期时间（如 2026-11-24T08:00:00Z）：{value!r} / {name} must "
            f"be an ISO 8601 dateTime such as 2026-11-24T08:00:00Z, not {value!r}"
        )
    return parsed


def parse_temporal_query(
    *,
    timerel: str | None = None,
    time_at: str | None = None,
    end_time_at: str | None = None,
    timeproperty: str | None = None,
    last_n: str | int | None = None,
    aggr_methods: str | Sequence[str] | None = None,
    aggr_period: str | None = None,
    aggregated: bool = False,
) -> TemporalQuery:
    """Validate the temporal parameters (raw strings from a query string or a POST body)."""
    query = TemporalQuery()
    if timerel is not None:
        timerel = timerel.strip()
        if timerel not in TIMERELS:
            raise _bad(
                f"timerel 只能是 before、after 或 between：{timerel!r} / timerel must be before, "
                f"after or between, not {timerel!r}"
            )
        query.timerel = timerel
        query.time_at = _time_param("timeAt", time_at)
        if query.time_at is None:
            raise _bad(f"timerel={timerel} 需要 timeAt / timerel={timerel} needs timeAt")
        if timerel == "between":
            query.end_time_at = _time_param("endTimeAt", end_time_at)
            if query.end_time_at is None:
                raise _bad("timerel=between 需要 endTimeAt / timerel=between needs endTimeAt")
            if query.end_time_at <= query.time_at:
                raise _bad(
                    "endTimeAt 必须晚于 timeAt / endTimeAt must be later than timeAt",
                )
        elif end_time_at is not None:
            raise _bad(
                f"endTimeAt 只用于 timerel=between / endTimeAt goes with timerel=between only, "
                f"not {timerel}"
            )
    elif time_at is not None or end_time_at is not None:
        raise _bad("timeAt/endTimeAt 需要 timerel / timeAt and endTimeAt need timerel")
    if timeproperty is not None:
        timeproperty = timeproperty.strip()
        if timeproperty not in TIME_PROPERTIES:
            raise _bad(
                f"timeproperty 只能是 {', '.join(TIME_PROPERTIES)}：{timeproperty!r} / "
                f"timeproperty must be one of {', '.join(TIME_PROPERTIES)}"
            )
        query.timeproperty = timeproperty
    if last_n is not None:
        try:
            n = int(str(last_n).strip())
        except ValueError:
            n = 0
        if n < 1:
            raise _bad(f"lastN 必须是正整数：{last_n!r} / lastN must be a positive integer")
        query.last_n = n
    query.aggregated = aggregated
    if aggregated or aggr_methods is not None:
        if aggr_methods is None or (isinstance(aggr_methods, str) and not aggr_methods.strip()):
            raise _bad(
                "聚合表示需要 aggrMethods / the aggregated representation needs aggrMethods, "
                f"e.g. aggrMethods=avg,max (one of {', '.join(AGGREGATION_METHODS)})"
            )
        if not isinstance(aggr_methods, str | list | tuple):
            raise _bad(
                "aggrMethods 必须是字符串或字符串数组 / aggrMethods must be a comma-separated "
                "string or an array of strings"
            )
        names = (
            [m.strip() for m in aggr_methods.split(",")]
            if isinstance(aggr_methods, str)
            else [str(m).strip() for m in aggr_methods]
        )
        unknown = [m for m in names if m not in AGGREGATION_METHODS]
        if unknown or not names:
            raise _bad(
                f"aggrMethods 中有未知的聚合方法 {unknown} / unknown aggregation method(s) "
                f"{unknown} in aggrMethods: use "
                f"{', '.join(AGGREGATION_METHODS)}"
            )
        query.aggr_methods = list(dict.fromkeys(names))
        # absent: zero, one period over the whole time range (clause 4.5.19)
        query.aggr_period = parse_duration(aggr_period) if aggr_period is not None else Duration()
    elif aggr_period is not None:
        raise _bad("aggrPeriodDuration 需要 aggrMethods / aggrPeriodDuration needs aggrMethods")
    return query


# --------------------------------------------------------------------------------------------
# aggregation (clause 4.5.19)


def _number(value: Any) -> float | None:
    """A value's number for sum/avg/stddev/sumsq: booleans as 0/1, arrays by their size."""
    if isinstance(value, dict) and "@value" in value:
        value = value["@value"]
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, list):
        return float(len(value))
    return None


def _key(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _extreme(values: list[Any], pick: Any) -> Any:
    numbers = [_number(v) for v in values]
    if all(n is not None for n in numbers):
        return pick(numbers)
    plain = [v["@value"] if isinstance(v, dict) and "@value" in v else v for v in values]
    if all(isinstance(v, str) for v in plain):
        times = [parse_time(v) for v in plain]
        if all(t is not None for t in times):
            return plain[times.index(pick(times))]  # DateTime: by time, shown as written
        return pick(plain)  # lexicographic (clause 4.5.19, JSON String)
    return None


def aggregate(method: str, values: list[Any], relationship: bool = False) -> Any:
    """One aggregation method over the values of one period (None: not applicable)."""
    if method == "totalCount":
        return len(values)
    if method == "distinctCount":
        return len({_key(v) for v in values})
    if relationship or not values:
        return None
    if method in ("min", "max"):
        return _extreme(values, min if method == "min" else max)
    numbers = [_number(v) for v in values]
    if any(n is None for n in numbers):
        return None
    nums = [n for n in numbers if n is not None]
    if method == "sum":
        return math.fsum(nums)
    if method == "avg":
        return math.fsum(nums) / len(nums)
    if method == "sumsq":
        return math.fsum(n * n for n in nums)
    return statistics.pstdev(nums)  # stddev: of the values themselves (population)


def _periods(
    start: datetime, end: datetime, period: Duration, first: datetime, last: datetime
) -> Iterable[tuple[datetime, datetime]]:
    """The periods [low, high) of a non-zero `period`, laid end to end from `start` and
    starting before `end`, that can hold an instance timed in [first, last]: those after the
    last instance are not made, and at most MAX_PERIODS are (TooManyResults)."""
    low = start
    count = 0
    while low < end and low <= last:
        try:
            high = period.after(low)
        except (OverflowError, ValueError):  # past year 9999
            raise _bad(
                "aggrPeriodDuration 过长 / aggrPeriodDuration is too long for these times"
            ) from None
        if high <= low:  # pragma: no cover - durations are positive
            break
        if high > first:
            yield low, high
            count += 1
            if count > MAX_PERIODS:
                raise TooManyResults(
                    f"聚合周期超过 {MAX_PERIODS} 个 / more than {MAX_PERIODS} aggregation "
                    "periods: choose a longer aggrPeriodDuration or a shorter time range",
                    maximum=MAX_PERIODS,
                )
        low = high


def _period_bound(moment: datetime) -> str:
    """A period's start or end as an NGSI-LD DateTime (clause 4.6.3) in UTC, as precise as it
    is: 2020-08-01T12:03:00Z for whole seconds (as the instances and timeAt are written, and
    as the spec's aggregated examples are), else with milliseconds or microseconds."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    micro = moment.microsecond
    if micro % 1000:
        return f"{text}.{micro:06d}Z"
    if micro:
        return f"{text}.{micro // 1000:03d}Z"
    return text + "Z"


# --------------------------------------------------------------------------------------------
# results


@dataclass
class TemporalPage:
    """Temporal entities (internal form, instances over time) and what the reply must say."""

    entities: list[Entity]
    total: int | None = None
    content_range: str | None = None  # "date-time <start>-<end>/<size>" when cut (206)
    aggregated: bool = False
    time_property: str = "observedAt"
    has_next: bool = False  # a query: more entities after this page (limit/offset)
    # entity id -> attribute -> kind, of the attributes a cut left without instances (shown
    # empty; the simplified representation still needs their type)
    emptied: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return self.content_range is not None


@dataclass
class _Row:
    id: int
    entity_id: str
    entity_type: str
    attr: str
    dataset_id: str
    kind: str
    observed_at: datetime | None
    recorded: datetime
    deleted: bool
    instance: Instance
    time: datetime = field(default=datetime.min.replace(tzinfo=UTC))


def _as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def recorded_now() -> datetime:
    """Now, in whole milliseconds as the broker stamps its writes: instances recorded by both
    then order by when they were recorded, ties by their order of writing."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def instance_id(row_id: int) -> str:
    return f"{INSTANCE_ID_PREFIX}{row_id}"


def parse_instance_id(value: str) -> int | None:
    if not value.startswith(INSTANCE_ID_PREFIX):
        return None
    rest = value[len(INSTANCE_ID_PREFIX) :]
    return int(rest) if rest.isdigit() and len(rest) < 19 else None


# --------------------------------------------------------------------------------------------
# the store


class TemporalStore:
    """Temporal reads and writes for one database (shares the broker's tenants)."""

    def __init__(self, broker: ContextBroker, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        self.broker = broker
        self.db = broker.db
        # Clause 6.3.10: the most instances of one attribute (and datasetId) in one reply.
        self.page_size = page_size

    # -- SQL pieces ------------------------------------------------------------------------------

    @staticmethod
    def _time_column(query: TemporalQuery) -> Any:
        if query.timeproperty == "observedAt":
            if query.timerel is None:
                return func.coalesce(_H.c.observed_at, _H.c.modified_at)
            return _H.c.observed_at
        return _H.c.modified_at

    def _row_filters(
        self, tenant: str, query: TemporalQuery, ids: Sequence[str] | None = None
    ) -> list[ColumnElement[bool]]:
        filters: list[ColumnElement[bool]] = [_H.c.tenant == tenant]
        filters.append(_H.c.deleted == (query.timeproperty == "deletedAt"))
        if ids is not None:
            filters.append(_H.c.entity_id.in_(list(ids)))
        if query.attrs:
            filters.append(_H.c.attr.in_(query.attrs))
        column = self._time_column(query)
        if query.timerel is not None:
            if query.timeproperty == "observedAt":
                filters.append(_H.c.observed_at.is_not(None))
            if query.timerel == "before":
                filters.append(column < query.time_at)
            elif query.timerel == "after":
                filters.append(column >= query.time_at)
            else:
                filters.append(and_(column >= query.time_at, column < query.end_time_at))
        return filters

    @staticmethod
    def _shown_filters(query: TemporalQuery) -> list[ColumnElement[bool]]:
        """The instances a reply shows of the entities selected: pick/omit and datasetId."""
        filters: list[ColumnElement[bool]] = []
        if query.pick_attrs is not None:
            filters.append(_H.c.attr.in_(query.pick_attrs))
        if query.omit_attrs:
            filters.append(_H.c.attr.not_in(query.omit_attrs))
        if query.datasets is not None:
            filters.append(_H.c.dataset_id.in_(query.datasets))
        return filters

    def _entity_filters(self, tenant: str, query: TemporalQuery) -> list[ColumnElement[bool]]:
        filters = self._row_filters(tenant, query, query.ids)
        if query.types:
            filters.append(self._type_filter(tenant, query.types))
        if query.selectors:
            filters.append(or_(*(self._selector_filter(tenant, s) for s in query.selectors)))
        current = select(_E.c.entity_id).where(_E.c.tenant == tenant)
        if query.geo is not None:
            # located now, or with no current state (then its past locations decide)
            located = _E.c.pk.in_(self.broker.geo_candidates(tenant, query.geo))
            filters.append(
                or_(
                    _H.c.entity_id.in_(current.where(located)),
                    _H.c.entity_id.not_in(current),
                )
            )
        if query.scope is not None:
            filters.append(_H.c.entity_id.in_(current.where(scope_clause(query.scope))))
        if query.id_pattern:
            filters += _prefix_range(query.id_pattern)
        return filters

    def _selector_filter(self, tenant: str, selector: Selector) -> ColumnElement[bool]:
        """History rows of one selector's entities (an idPattern only by its literal prefix:
        `_selected` tests the pattern itself)."""
        parts: list[ColumnElement[bool]] = []
        if selector.ids:
            parts.append(_H.c.entity_id.in_(selector.ids))
        if selector.types:
            parts.append(self._type_filter(tenant, selector.types))
        if selector.id_pattern:
            parts += _prefix_range(selector.id_pattern)
        return and_(*parts) if parts else true()

    @staticmethod
    def _type_filter(tenant: str, types: list[frozenset[str]]) -> ColumnElement[bool]:
        """History rows of entities of a type selection. A single type also matches by the
        type the history recorded (the first), so entities gone from the current state are
        found; a conjunction needs the current entity to hold every type."""

        def holding(names: Iterable[str]) -> Any:
            found = select(_E.c.entity_id).where(_E.c.tenant == tenant)
            for name in sorted(names):
                found = found.where(
                    _E.c.pk.in_(
                        select(_T.c.entity_pk).where(_T.c.tenant == tenant, _T.c.type == name)
                    )
                )
            return found

        singles = sorted({t for conjunction in types if len(conjunction) == 1 for t in conjunction})
        alternatives: list[ColumnElement[bool]] = []
        if singles:
            current = select(_E.c.entity_id).where(
                _E.c.tenant == tenant,
                _E.c.pk.in_(
                    select(_T.c.entity_pk).where(_T.c.tenant == tenant, _T.c.type.in_(singles))
                ),
            )
            alternatives += [_H.c.entity_type.in_(singles), _H.c.entity_id.in_(current)]
        for conjunction in types:
            if len(conjunction) > 1:
                alternatives.append(_H.c.entity_id.in_(holding(conjunction)))
        return or_(*alternatives) if len(alternatives) > 1 else alternatives[0]

    def _load_rows(
        self,
        session: Session,
        tenant: str,
        query: TemporalQuery,
        ids: Sequence[str],
        cap: int | None,
        backward: bool,
    ) -> list[_Row]:
        """Rows of these entities in the window: per (entity, attr, datasetId) the first
        (or, backward, the last) `cap` by time, or all when cap is None."""
        column = self._time_column(query)
        columns = [
            _H.c.id,
            _H.c.entity_id,
            _H.c.entity_type,
            _H.c.attr,
            _H.c.dataset_id,
            _H.c.kind,
            _H.c.observed_at,
            _H.c.modified_at,
            _H.c.deleted,
            _H.c.instance,
            column.label("tval"),
        ]
        filters = self._row_filters(tenant, query, ids) + self._shown_filters(query)
        if cap is None:
            statement = select(*columns).where(*filters)
        else:
            order = (column.desc(), _H.c.id.desc()) if backward else (column.asc(), _H.c.id.asc())
            rank = (
                func.row_number()
                .over(partition_by=(_H.c.entity_id, _H.c.attr, _H.c.dataset_id), order_by=order)
                .label("rn")
            )
            inner = select(*columns, rank).where(*filters).subquery()
            statement = select(*[inner.c[c.name] for c in columns]).where(inner.c.rn <= cap)
        rows: list[_Row] = []
        for r in session.execute(statement):
            instance: Instance = orjson.loads(r.instance)
            recorded = _as_utc(r.modified_at) or datetime.now(UTC)
            rows.append(
                _Row(
                    id=r.id,
                    entity_id=r.entity_id,
                    entity_type=r.entity_type,
                    attr=r.attr,
                    dataset_id=r.dataset_id,
                    kind=r.kind,
                    observed_at=_as_utc(r.observed_at),
                    recorded=recorded,
                    deleted=r.deleted,
                    instance=instance,
                    time=_as_utc(r.tval) or recorded,
                )
            )
        rows.sort(key=lambda row: (row.entity_id, row.attr, row.dataset_id, row.time, row.id))
        return rows

    def _types_of(self, session: Session, tenant: str, ids: Sequence[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        if not ids:
            return found
        for entity_id, doc in session.execute(
            select(_E.c.entity_id, _E.c.doc).where(
                _E.c.tenant == tenant, _E.c.entity_id.in_(list(ids))
            )
        ):
            found[entity_id] = list(orjson.loads(doc).get("type", []))
        missing = [i for i in ids if i not in found]
        if missing:
            rows = session.execute(
                select(_H.c.entity_id, _H.c.entity_type, func.min(_H.c.id))
                .where(_H.c.tenant == tenant, _H.c.entity_id.in_(missing))
                .group_by(_H.c.entity_id, _H.c.entity_type)
                .order_by(func.min(_H.c.id))
            )
            for entity_id, entity_type, _ in rows:
                if entity_type:
                    found.setdefault(entity_id, []).append(entity_type)
        return found

    # -- reads -----------------------------------------------------------------------------------

    def query(self, tenant: str, query: TemporalQuery) -> TemporalPage:
        """Matching temporal entities, one page (`limit` entities by id, `has_next` telling
        whether more follow), their instances cut per 6.3.10."""
        self.broker.require_tenant(tenant)
        if query.limit > MAX_LIMIT:
            raise TooManyResults(
                f"limit 不能超过 {MAX_LIMIT} / limit must not exceed {MAX_LIMIT}",
                maximum=MAX_LIMIT,
            )
        # (the broker's session: on SQLite it makes sure the spatial index a geo-query reads
        # exists, even before any entity was written)
        with self.broker.session() as session:
            # one entity more than the page, to know whether another page follows
            probe = replace(query, limit=query.limit + 1) if query.limit else query
            ids, total = self._select_ids(session, tenant, probe)
            page = self._page(session, tenant, query, ids[: query.limit], total)
            page.has_next = len(ids) > query.limit
            return page

    def retrieve(self, tenant: str, entity_id: str, query: TemporalQuery) -> TemporalPage:
        """One entity's temporal evolution; NotFound if it has no history at all."""
        self.broker.require_tenant(tenant)
        with self.db.session() as session:
            if not self._exists(session, tenant, entity_id):
                raise NotFound(
                    f"实体 {entity_id} 没有时间演变 / entity {entity_id} has no temporal evolution",
                    id=entity_id,
                )
            if query.attrs and not self._exists(session, tenant, entity_id, query.attrs):
                # Clause 5.7.1, as for the current state: none of the attributes asked for,
                # at any time, is not found (one outside the time window is merely empty).
                raise NotFound(
                    f"实体 {entity_id} 没有所请求的属性 / entity {entity_id} has none of the "
                    "requested attributes",
                    id=entity_id,
                )
            return self._page(session, tenant, query, [entity_id], None)

    def _exists(
        self, session: Session, tenant: str, entity_id: str, attrs: list[str] | None = None
    ) -> bool:
        where = [_H.c.tenant == tenant, _H.c.entity_id == entity_id]
        if attrs:
            where.append(_H.c.attr.in_(attrs))
        return session.execute(select(_H.c.id).where(*where).limit(1)).first() is not None

    def _select_ids(
        self, session: Session, tenant: str, query: TemporalQuery
    ) -> tuple[list[str], int | None]:
        filters = self._entity_filters(tenant, query)
        ids_sql = select(_H.c.entity_id).where(*filters).group_by(_H.c.entity_id)
        pattern = re.compile(query.id_pattern) if query.id_pattern else None
        current = query.geo is not None or query.scope is not None
        patterned = any(s.id_pattern for s in query.selectors or ())
        if query.q is None and pattern is None and not current and not patterned:
            total = None
            if query.count:
                total = session.execute(
                    select(func.count()).select_from(ids_sql.subquery())
                ).scalar_one()
            if query.limit == 0:
                return [], total
            page = session.scalars(
                ids_sql.order_by(_H.c.entity_id).limit(query.limit).offset(query.offset)
            ).all()
            return list(page), total
        matched: list[str] = []
        seen = 0
        last = ""
        while True:
            chunk = session.scalars(
                ids_sql.where(_H.c.entity_id > last).order_by(_H.c.entity_id).limit(CHUNK)
            ).all()
            if not chunk:
                break
            last = chunk[-1]
            candidates = [i for i in chunk if pattern is None or pattern.fullmatch(i)]
            if patterned and candidates:
                candidates = self._selected(session, tenant, query, candidates)
            if current and candidates:
                candidates = self._current_matches(session, tenant, query, candidates)
                if query.geo is not None:
                    candidates = self._geo_history_matches(session, tenant, query, candidates)
            if query.q is not None and candidates:
                candidates = self._q_matches(session, tenant, query, candidates)
            for entity_id in candidates:
                if query.offset <= seen < query.offset + query.limit:
                    matched.append(entity_id)
                seen += 1
            if not query.count and seen >= query.offset + query.limit:
                break
            if len(chunk) < CHUNK:
                break
        return matched, (seen if query.count else None)

    def _selected(
        self, session: Session, tenant: str, query: TemporalQuery, ids: list[str]
    ) -> list[str]:
        """The ids matching one of the query's selectors, idPatterns included: the SQL filter
        let through any id matching some selector's other members and some pattern's prefix."""
        common = self._row_filters(tenant, query, ids)
        kept: set[str] = set()
        for selector in query.selectors or ():
            found = session.scalars(
                select(_H.c.entity_id)
                .where(*common, self._selector_filter(tenant, selector))
                .group_by(_H.c.entity_id)
            )
            pattern = re.compile(selector.id_pattern) if selector.id_pattern else None
            kept.update(i for i in found if pattern is None or pattern.fullmatch(i))
        return [i for i in ids if i in kept]

    @staticmethod
    def _current_matches(
        session: Session, tenant: str, query: TemporalQuery, ids: list[str]
    ) -> list[str]:
        """The ids whose current entity is in the geo-query's area and the scope query's
        scopes. An entity without current state matches no scope query; for a geo-query it is
        kept, to be decided on its history (`_geo_history_matches`)."""
        rows = session.execute(
            select(_E.c.entity_id, _E.c.doc).where(_E.c.tenant == tenant, _E.c.entity_id.in_(ids))
        )
        # (not dict(rows): a Result has keys(), so dict() would read it as a mapping)
        docs: dict[str, str] = {row.entity_id: row.doc for row in rows}
        kept = []
        for entity_id in ids:
            doc = docs.get(entity_id)
            if doc is None:
                if query.scope is None:
                    kept.append(entity_id)
                continue
            entity: Entity = orjson.loads(doc)
            if query.geo is not None and not geo_matches(entity, query.geo):
                continue
            if query.scope is not None and not ngsild_scope.matches_entity(query.scope, entity):
                continue
            kept.append(entity_id)
        return kept

    def _geo_history_matches(
        self, session: Session, tenant: str, query: TemporalQuery, ids: list[str]
    ) -> list[str]:
        """Entities without current state (deleted, or known only through the temporal API)
        match a geo-query when an instance of the GeoProperty inside the time window does;
        the others were decided on their current location."""
        geo = query.geo
        if geo is None or not ids:
            return ids
        present = set(
            session.scalars(
                select(_E.c.entity_id).where(_E.c.tenant == tenant, _E.c.entity_id.in_(ids))
            )
        )
        past = [i for i in ids if i not in present]
        if not past:
            return ids
        # the window of the query; a deletion has no location, so under deletedAt every
        # location the entity had counts
        window = TemporalQuery(attrs=[geo.geoproperty])
        if query.timeproperty != "deletedAt":
            window = replace(
                window,
                timerel=query.timerel,
                time_at=query.time_at,
                end_time_at=query.end_time_at,
                timeproperty=query.timeproperty,
            )
        rows = self._load_rows(session, tenant, window, past, None, backward=False)
        located = {
            r.entity_id
            for r in rows
            if isinstance(r.instance.get("value"), dict) and geo.matches(r.instance["value"])
        }
        return [i for i in ids if i in present or i in located]

    def _q_matches(
        self, session: Session, tenant: str, query: TemporalQuery, ids: list[str]
    ) -> list[str]:
        """q holds for an entity if each term holds for some instance inside the time window:
        the entity is tested with every instance in the window as one of its instances."""
        if query.q is None:
            return ids
        whole = TemporalQuery(
            timerel=query.timerel,
            time_at=query.time_at,
            end_time_at=query.end_time_at,
            timeproperty=query.timeproperty,
        )
        rows = self._load_rows(session, tenant, whole, ids, None, backward=False)
        pseudo: dict[str, Entity] = {i: {"id": i} for i in ids}
        for row in rows:
            pseudo[row.entity_id].setdefault(row.attr, []).append(row.instance)
        return [i for i in ids if evaluate(query.q, pseudo[i])]

    def _page(
        self,
        session: Session,
        tenant: str,
        query: TemporalQuery,
        ids: list[str],
        total: int | None,
    ) -> TemporalPage:
        types = self._types_of(session, tenant, ids)
        aggregated = query.aggregated and query.aggr_methods is not None
        backward = query.last_n is not None
        limit = self.page_size
        if aggregated:
            cap = None  # aggregated replies are not paged: every instance counts
        elif query.last_n is not None and query.last_n <= limit:
            cap = query.last_n
        else:
            cap = limit + 1  # one more than fits tells that the attribute goes on
        rows = self._load_rows(session, tenant, query, ids, cap, backward)
        grouped: dict[str, dict[tuple[str, str], list[_Row]]] = {i: {} for i in ids}
        for row in rows:
            grouped[row.entity_id].setdefault((row.attr, row.dataset_id), []).append(row)
        if aggregated:
            summaries = [self._aggregated(i, types, grouped[i], query) for i in ids]
            return TemporalPage(summaries, total, None, True, query.timeproperty)
        kinds = {
            (entity_id, attr): members[0].kind
            for entity_id, groups in grouped.items()
            for (attr, _), members in groups.items()
            if members
        }
        grouped, cut = _cut(grouped, limit, backward)
        entities: list[Entity] = []
        times: list[datetime] = []
        emptied: dict[str, dict[str, str]] = {}
        for entity_id in ids:
            entity: Entity = {"id": entity_id, "type": types.get(entity_id, [])}
            for (attr, _), members in grouped[entity_id].items():
                # an attribute cut to nothing stays, empty: it has instances on a later page
                entity.setdefault(attr, []).extend(
                    self._instance(r, query.timeproperty) for r in members
                )
                times.extend(r.time for r in members)
            for name, instances in entity.items():
                if name not in ("id", "type") and not instances:
                    emptied.setdefault(entity_id, {})[name] = kinds[(entity_id, name)]
            entities.append(entity)
        content_range = None
        if cut and times:
            content_range = _content_range(query, min(times), max(times), backward)
        return TemporalPage(
            entities, total, content_range, False, query.timeproperty, emptied=emptied
        )

    @staticmethod
    def _instance(row: _Row, timeproperty: str) -> Instance:
        instance = dict(row.instance)
        patched = "instanceId" in instance
        instance["instanceId"] = instance_id(row.id)
        instance["createdAt"] = iso(row.recorded)
        if not patched:
            instance["modifiedAt"] = iso(row.recorded)
        if row.deleted:
            instance.setdefault("deletedAt", iso(row.recorded))
            _null_member(instance)
        return instance

    def _aggregated(
        self,
        entity_id: str,
        types: dict[str, list[str]],
        groups: dict[tuple[str, str], list[_Row]],
        query: TemporalQuery,
    ) -> Entity:
        methods = query.aggr_methods or []
        period = query.aggr_period or Duration()
        entity: Entity = {"id": entity_id, "type": types.get(entity_id, [])}
        all_times = [r.time for members in groups.values() for r in members]
        if not all_times:
            return entity
        # The time range of the query (clause 4.5.19): from timeAt (after, between) or the
        # first instance, to endTimeAt (between), timeAt (before) or the last instance.
        first, last = min(all_times), max(all_times)
        start, end, open_end = first, last, True
        if query.timerel in ("after", "between") and query.time_at is not None:
            start = query.time_at
        if query.timerel == "between" and query.end_time_at is not None:
            end, open_end = query.end_time_at, False
        elif query.timerel == "before" and query.time_at is not None:
            end, open_end = query.time_at, False
        # periods are half-open: an open range must still hold its last instance
        stop = end + timedelta(microseconds=1) if open_end else end
        for (attr, dataset), members in groups.items():
            relationship = members[0].kind in ("Relationship", "ListRelationship")
            out: Instance = {"type": members[0].kind}
            if dataset:
                out["datasetId"] = dataset
            if period.is_zero:  # one period, the whole range (ending at the last instance)
                buckets = [((start, end), members)]
            else:
                buckets = _buckets(members, start, stop, period, first, last)
            if query.last_n is not None:
                buckets = buckets[-query.last_n :]
            for method in methods:
                out[method] = [
                    [
                        aggregate(method, [instance_value(r.instance) for r in rows], relationship),
                        _period_bound(low),
                        _period_bound(high),
                    ]
                    for (low, high), rows in buckets
                ]
            entity.setdefault(attr, []).append(out)
        return entity

    # -- writes ----------------------------------------------------------------------------------

    def upsert_current(
        self, tenant: str, entity: Entity, scope: list[str] | None, owner: str | None
    ) -> bool:
        """Create or add to an entity's temporal evolution (clause 5.6.11; True if it is new),
        and for an entity with no current state, create that too (docs/context.md "Temporal
        evolution"), in one transaction. `entity` is {"id", "type": [...], attr IRI:
        [instances over time]}. The latest instance of each attribute and datasetId becomes
        the current entity (whose create records it in the history and fires subscriptions,
        as every create does), the others go to the history. An entity that exists gets every
        instance in its history only."""
        created = False

        def prepare(session: Session, exists: bool) -> Entity | None:
            nonlocal created
            if exists:
                created = self._upsert(session, tenant, entity)[0]
                return None
            latest, rest = latest_split(entity)
            created, types = self._upsert(session, tenant, rest)
            current: Entity = {"id": entity["id"], "type": types}
            if scope is not None:
                current["scope"] = scope
            current.update(latest)
            return current

        self.broker.create_unless_present(tenant, entity["id"], prepare, owner)
        return created

    def _upsert(self, session: Session, tenant: str, entity: Entity) -> tuple[bool, list[str]]:
        """(whether the evolution is new, the entity's types) after writing its instances."""
        self.broker.ensure_tenant(session, tenant)
        known = self._types_of(session, tenant, [entity["id"]]).get(entity["id"])
        types = entity.get("type") or known
        if not types:
            raise _bad(
                "新的时间演变实体需要 type / a new temporal entity needs a type", id=entity["id"]
            )
        self._insert(session, tenant, entity["id"], types[0], entity)
        return known is None, list(types)

    def add_attrs(self, tenant: str, entity_id: str, fragment: Entity) -> None:
        """Add attribute instances to an existing temporal evolution (clause 5.6.12)."""
        self.broker.require_tenant(tenant)
        with self.db.session() as session:
            types = self._types_of(session, tenant, [entity_id]).get(entity_id)
            if not types:
                raise NotFound(
                    f"实体 {entity_id} 没有时间演变 / entity {entity_id} has no temporal evolution",
                    id=entity_id,
                )
            self._insert(session, tenant, entity_id, types[0], fragment)

    def _insert(
        self, session: Session, tenant: str, entity_id: str, entity_type: str, entity: Entity
    ) -> None:
        now = recorded_now()
        stamp = iso(now)
        rows: list[dict[str, Any]] = []
        for name, instances in entity.items():
            if name in ("id", "type"):
                continue
            for instance in instances:
                stored = {**instance, "createdAt": stamp, "modifiedAt": stamp}
                stored.pop("instanceId", None)
                rows.append(self._row_values(tenant, entity_id, entity_type, name, stored, now))
        self.broker.history.write_values(session, rows)

    @staticmethod
    def _row_values(
        tenant: str,
        entity_id: str,
        entity_type: str,
        name: str,
        instance: Instance,
        now: datetime,
    ) -> dict[str, Any]:
        num, txt = index_value(instance)
        return {
            "tenant": tenant,
            "entity_id": entity_id,
            "entity_type": entity_type,
            "attr": name,
            "dataset_id": str(instance.get("datasetId") or ""),
            "kind": instance.get("type", "Property"),
            "observed_at": parse_time(instance.get("observedAt")),
            "modified_at": now,
            "deleted": False,
            "num": num,
            "txt": txt,
            "instance": orjson.dumps(instance).decode(),
        }

    def delete_entity(self, tenant: str, entity_id: str) -> None:
        """Delete an entity's temporal evolution (clause 5.6.16), and with it the entity's
        current state, in one transaction: the temporal representation is the entity's
        whole life, so afterwards the entity exists in neither view (as `POST` of a new one
        creates both)."""
        self.broker.require_tenant(tenant)

        def purge(session: Session) -> int:
            return delete_rows(session, series_of(tenant, entity_id))

        if not self.broker.delete_with_history(tenant, entity_id, purge):
            raise NotFound(
                f"实体 {entity_id} 没有时间演变 / entity {entity_id} has no temporal evolution",
                id=entity_id,
            )

    def delete_attr(
        self,
        tenant: str,
        entity_id: str,
        attr: str,
        dataset_id: str | None = None,
        delete_all: bool = False,
    ) -> None:
        """Delete an attribute's instances: the default ones, one datasetId's, or all
        (clause 5.6.13)."""
        self.broker.require_tenant(tenant)
        with self.db.session() as session:
            if not self._exists(session, tenant, entity_id):
                raise NotFound(
                    f"实体 {entity_id} 没有时间演变 / entity {entity_id} has no temporal evolution",
                    id=entity_id,
                )
            dataset = None if delete_all else (dataset_id or "")
            if not delete_rows(session, series_of(tenant, entity_id, attr, dataset)):
                raise NotFound(
                    f"实体 {entity_id} 没有属性 {attr} 的实例 / entity {entity_id} has no "
                    f"instances of attribute {attr}",
                    id=entity_id,
                    attribute=attr,
                )

    def _row_of(
        self, session: Session, tenant: str, entity_id: str, attr: str, instance: str
    ) -> Any:
        if not self._exists(session, tenant, entity_id):
            raise NotFound(
                f"实体 {entity_id} 没有时间演变 / entity {entity_id} has no temporal evolution",
                id=entity_id,
            )
        row_id = parse_instance_id(instance)
        row = None
        if row_id is not None:
            row = session.execute(
                select(_H.c.id, _H.c.entity_type, _H.c.modified_at, _H.c.instance).where(
                    _H.c.id == row_id,
                    _H.c.tenant == tenant,
                    _H.c.entity_id == entity_id,
                    _H.c.attr == attr,
                )
            ).first()
        if row is None:
            raise NotFound(
                f"属性 {attr} 没有实例 {instance} / attribute {attr} has no instance {instance}",
                id=entity_id,
                attribute=attr,
                instanceId=instance,
            )
        return row

    def modify_instance(
        self, tenant: str, entity_id: str, attr: str, instance: str, new: Instance
    ) -> None:
        """Replace one instance, keeping its createdAt (clause 5.6.14)."""
        self.broker.require_tenant(tenant)
        with self.db.session() as session:
            row = self._row_of(session, tenant, entity_id, attr, instance)
            now = recorded_now()
            recorded = _as_utc(row.modified_at) or now
            stored = {
                **new,
                "instanceId": instance,  # marks a modified instance (its modifiedAt is its own)
                "createdAt": iso(recorded),
                "modifiedAt": iso(now),
            }
            num, txt = index_value(stored)
            key = (
                tenant,
                entity_id,
                row.entity_type,
                attr,
                str(stored.get("datasetId") or ""),
                stored.get("type", "Property"),
            )
            series_id = self.broker.history.series_ids(session, [key])[key]
            session.execute(
                update(HISTORY)
                .where(HISTORY.c.id == row.id)
                .values(
                    series_id=series_id,
                    observed_at=parse_time(stored.get("observedAt")),
                    num=num,
                    txt=txt,
                    instance=orjson.dumps(stored).decode(),
                )
            )

    def delete_instance(self, tenant: str, entity_id: str, attr: str, instance: str) -> None:
        """Delete one instance (clause 5.6.15)."""
        self.broker.require_tenant(tenant)
        with self.db.session() as session:
            row = self._row_of(session, tenant, entity_id, attr, instance)
            session.execute(delete(HISTORY).where(HISTORY.c.id == row.id))


# --------------------------------------------------------------------------------------------
# helpers


_Buckets = list[tuple[tuple[datetime, datetime], list[_Row]]]


# The NGSI-LD Null of each attribute type in the type's own value member (clause 5.2.1: deleted
# elements in notifications and in the temporal evolution): a deleted Relationship instance is
# `{"type": "Relationship", "object": "urn:ngsi-ld:null"}`, not a `value`.
_NULL = "urn:ngsi-ld:null"
_NULL_MEMBERS: dict[str, tuple[str, Any]] = {
    "Relationship": ("object", _NULL),
    "LanguageProperty": ("languageMap", {"@none": _NULL}),
    "ListProperty": ("valueList", [_NULL]),
    "ListRelationship": ("objectList", [_NULL]),
    "JsonProperty": ("json", _NULL),
    "VocabProperty": ("vocab", _NULL),
}


def _null_member(instance: Instance) -> None:
    """Put a deletion marker's Null in its type's value member (markers recorded with `value`
    whatever the type are read the same way)."""
    member, null = _NULL_MEMBERS.get(str(instance.get("type") or "Property"), ("value", _NULL))
    if member != "value":
        instance.pop("value", None)
    instance[member] = orjson.loads(orjson.dumps(null))


def _buckets(
    rows: list[_Row],
    start: datetime,
    stop: datetime,
    period: Duration,
    first: datetime,
    last: datetime,
) -> _Buckets:
    """The rows per period of a non-zero `period`, periods laid end to end from `start` (the
    last one starting before `stop`); periods without rows are left out. A fixed span finds
    each row's period by division, so a long range costs nothing; calendar months are
    walked (`_periods`, at most MAX_PERIODS)."""
    ordered = sorted(rows, key=lambda r: r.time)
    if period.months:
        return _bucket(ordered, list(_periods(start, stop, period, first, last)))
    span = period.span
    found: dict[int, list[_Row]] = {}
    for row in ordered:
        if start <= row.time < stop:
            found.setdefault((row.time - start) // span, []).append(row)
    try:
        return [((start + k * span, start + (k + 1) * span), rs) for k, rs in found.items()]
    except OverflowError:  # past year 9999
        raise _bad(
            "aggrPeriodDuration 过长 / aggrPeriodDuration is too long for these times"
        ) from None


def _bucket(ordered: list[_Row], bounds: list[tuple[datetime, datetime]]) -> _Buckets:
    """Rows (in time order) per period, periods without rows left out."""
    out: _Buckets = []
    index = 0
    for low, high in bounds:
        members = []
        while index < len(ordered) and ordered[index].time < low:
            index += 1
        while index < len(ordered) and ordered[index].time < high:
            members.append(ordered[index])
            index += 1
        if members:
            out.append(((low, high), members))
    return out


_Groups = dict[str, dict[tuple[str, str], list[_Row]]]


def _cut(grouped: _Groups, limit: int, backward: bool) -> tuple[_Groups, bool]:
    """Clause 6.3.10: when an attribute (of one entity, one datasetId) has more than `limit`
    instances, every attribute of every entity of the reply is cut at one instant, so that
    the Content-Range names one time range that the reply holds completely and the next page
    (asked from its end on) misses nothing. Each group is in time order, oldest first."""
    over = [v for groups in grouped.values() for v in groups.values() if len(v) > limit]
    if not over:
        return grouped, False
    if backward:
        # keep the newest `limit`: the boundary is the latest of the oldest kept instants
        boundary = max(v[len(v) - limit].time for v in over)
        return {
            e: {k: [r for r in v if r.time >= boundary] for k, v in groups.items()}
            for e, groups in grouped.items()
        }, True
    boundary = min(v[limit - 1].time for v in over)
    return {
        e: {k: [r for r in v if r.time <= boundary] for k, v in groups.items()}
        for e, groups in grouped.items()
    }, True


def _content_range(
    query: TemporalQuery, earliest: datetime, latest: datetime, backward: bool
) -> str:
    """`date-time <start>-<end>/<size>` of a cut reply (clause 6.3.10): forwards from timeAt
    (after, between) or the first instance to the last instance returned, size `*`; with
    lastN backwards from timeAt (before), endTimeAt (between) or the newest instance to the
    oldest returned, size lastN."""
    if backward:
        if query.timerel == "before" and query.time_at is not None:
            start = query.time_at
        elif query.timerel == "between" and query.end_time_at is not None:
            start = query.end_time_at
        else:
            start = latest
        return f"date-time {iso(start)}-{iso(earliest)}/{query.last_n}"
    if query.timerel in ("after", "between") and query.time_at is not None:
        start = query.time_at
    else:
        start = earliest
    return f"date-time {iso(start)}-{iso(latest)}/*"


def _prefix_range(pattern: str) -> list[ColumnElement[bool]]:
    """History rows whose entity id starts with an idPattern's literal prefix (none if the
    pattern has none)."""
    prefix = literal_prefix(pattern)
    if not prefix:
        return []
    return [_H.c.entity_id >= prefix, _H.c.entity_id < prefix + "\U0010ffff"]


_NOT_CURRENT = ("instanceId", "createdAt", "modifiedAt", "deletedAt")


def latest_split(entity: Entity) -> tuple[Entity, Entity]:
    """(the current attributes, the rest) of an EntityTemporal: per attribute and datasetId the
    instance with the latest `observedAt` (the last given among equals, or when none has one)
    goes to the current entity, every other instance to the rest, each exactly once."""
    latest: Entity = {}
    rest: Entity = {"id": entity["id"], "type": entity.get("type") or []}
    for name, instances in entity.items():
        if name in ("id", "type"):
            continue
        best: dict[str, tuple[tuple[bool, Any, int], Instance]] = {}
        for position, instance in enumerate(instances):
            moment = parse_time(instance.get("observedAt"))
            key = (moment is not None, moment, position)
            dataset = str(instance.get("datasetId") or "")
            held = best.get(dataset)
            if held is None or _later(key, held[0]):
                best[dataset] = (key, instance)
        chosen = {id(instance) for _, instance in best.values()}
        latest[name] = [
            {k: v for k, v in instance.items() if k not in _NOT_CURRENT}
            for _, instance in best.values()
        ]
        others = [i for i in instances if id(i) not in chosen]
        if others:
            rest[name] = others
    return latest, rest


def _later(key: tuple[bool, Any, int], than: tuple[bool, Any, int]) -> bool:
    """Whether an instance keyed (has observedAt, observedAt, position) is the newer one."""
    if key[0] != than[0]:
        return key[0]
    if key[0] and key[1] != than[1]:
        return bool(key[1] > than[1])
    return key[2] > than[2]
