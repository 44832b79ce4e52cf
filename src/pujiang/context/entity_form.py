"""The internal entity form (docs/context.md) without the database: its names, time parsing
and formatting, the index value and bounding box of an instance, and small helpers on an
attribute's list of instances."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import shapely

from pujiang.context.models import TXT_LEN

Entity = dict[str, Any]
Instance = dict[str, Any]

DEFAULT_TENANT = ""
NGSI_LD_NULL = "urn:ngsi-ld:null"
LOCATION = "https://uri.etsi.org/ngsi-ld/location"

# Top-level members of the internal form that are not attributes.
ENTITY_KEYS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt", "deletedAt", "@context"})
# Members of an attribute instance that are not sub-attributes.
INSTANCE_KEYS = frozenset(
    {
        "type",
        "value",
        "object",
        "objectType",
        "languageMap",
        "valueList",
        "objectList",
        "json",
        "vocab",
        "datasetId",
        "observedAt",
        "unitCode",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "instanceId",
        "lang",
    }
)
_SYSTEM_TIMES = ("createdAt", "modifiedAt")


# -- small helpers ------------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def attributes_of(entity: Entity) -> Iterator[tuple[str, list[Instance]]]:
    for name, instances in entity.items():
        if name not in ENTITY_KEYS:
            yield name, instances


def dataset_of(instance: Instance) -> str:
    return str(instance.get("datasetId") or "")


def index_value(instance: Instance) -> tuple[float | None, str | None]:
    """The (num, txt) pair of an instance for the attribute index and history.

    Only single scalars are indexed (ngsild_q.Prefilter's rule): a Property's number or string,
    a Relationship's one object, a VocabProperty's one vocab. Booleans, arrays, objects and the
    other attribute types get (None, None) and are decided by `evaluate` alone.
    """
    kind = instance.get("type")
    if kind == "Relationship":
        obj = instance.get("object")
        return None, obj[:TXT_LEN] if isinstance(obj, str) else None
    if kind == "VocabProperty":
        vocab = instance.get("vocab")
        return None, vocab[:TXT_LEN] if isinstance(vocab, str) else None
    if kind != "Property":
        return None, None
    value = instance.get("value")
    if isinstance(value, bool):
        return None, None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None, None
        return (number if math.isfinite(number) else None), None
    if isinstance(value, str):
        return None, value[:TXT_LEN]
    return None, None


def geo_bounds(geometry: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(geometry, dict):
        return None
    coordinates = geometry.get("coordinates")
    if geometry.get("type") == "Point" and isinstance(coordinates, list) and len(coordinates) >= 2:
        x, y = coordinates[0], coordinates[1]
        if isinstance(x, int | float) and isinstance(y, int | float):
            return float(x), float(y), float(x), float(y)
    try:
        bounds = shapely.geometry.shape(geometry).bounds
    except Exception:
        return None
    if any(math.isnan(b) for b in bounds):
        return None
    return bounds[0], bounds[1], bounds[2], bounds[3]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _db_time(iso: str) -> datetime:
    parsed = parse_time(iso)
    if parsed is None:
        raise ValueError(f"not an ISO time: {iso!r}")
    return parsed


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _copy(entity: Entity) -> Entity:
    return {k: (list(v) if isinstance(v, list) else v) for k, v in entity.items()}


def _find(instances: Iterable[Instance], dataset: str) -> Instance | None:
    for instance in instances:
        if dataset_of(instance) == dataset:
            return instance
    return None


def _put(instances: list[Instance], instance: Instance) -> list[Instance]:
    dataset = dataset_of(instance)
    out = [i for i in instances if dataset_of(i) != dataset]
    out.append(instance)
    return out
