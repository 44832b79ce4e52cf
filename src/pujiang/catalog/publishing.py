"""Opening a dataset safely: personal columns masked, generalised or suppressed by their rule,
and a k-anonymity check over the quasi-identifiers before anything is published.

The published copy is a table of its own (named by the resource's `published_id`), so the
open-data API and its SQL endpoint never touch the source table.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pujiang.catalog import datastore
from pujiang.catalog.datastore import SHANGHAI, ColumnSpec
from pujiang.catalog.models import CatalogResource
from pujiang.catalog.vocab import ItemType, PublishRule
from pujiang.platform.errors import Problem
from pujiang.platform.i18n import register
from pujiang.platform.identifiers import mask_id_number, mask_name, mask_phone

register(
    {
        "catalog.k_anonymity": (
            "k-匿名检查未通过：准标识符组合 {combination} 只有 {count} 条记录，少于最小值 k={k}；"
            "请对这些列设置 generalise 或 suppress 规则，或合并稀少的取值后再开放",
            "k-anonymity check failed: the quasi-identifier combination {combination} has only "
            "{count} records, fewer than the minimum k={k}; generalise or suppress these "
            "columns, or merge rare values, before opening",
        ),
    }
)

_ID_RE = re.compile(r"^\d{17}[\dXx]$|^\d{15}$")
_PHONE_RE = re.compile(r"^[+\d][\d\s()-]{6,}$")


def source_name(resource: CatalogResource) -> str:
    return f"ds_{resource.uid.replace('-', '')}"


def source_specs(resource: CatalogResource) -> list[ColumnSpec]:
    return [ColumnSpec(i["name"], ItemType(i["type"])) for i in resource.items]


def source_table(resource: CatalogResource) -> Any:
    return datastore.build_table(source_name(resource), source_specs(resource))


def published_specs(resource: CatalogResource) -> list[ColumnSpec]:
    specs = []
    for item in resource.items:
        rule = PublishRule(item["publish_rule"])
        if rule is PublishRule.SUPPRESS:
            continue
        kind = ItemType(item["type"]) if rule is PublishRule.KEEP else ItemType.STRING
        specs.append(ColumnSpec(item["name"], kind))
    return specs


def published_table(resource: CatalogResource) -> Any:
    if resource.published_id is None:
        raise ValueError("resource has no published copy")
    return datastore.build_table(resource.published_id, published_specs(resource))


def mask_value(value: Any) -> str | None:
    """Hide most of a value, keeping the part people need to recognise its kind."""
    if value is None:
        return None
    text = datastore.jsonable(value) if not isinstance(value, str) else value
    text = str(text)
    if _ID_RE.match(text):
        return mask_id_number(text)
    if _PHONE_RE.match(text) and sum(c.isdigit() for c in text) >= 7:
        return mask_phone(text)
    return mask_name(text)


def generalise_value(kind: ItemType, value: Any) -> str | None:
    """Coarsen: numbers to bands of ten, dates to months, text to its first three characters."""
    if value is None:
        return None
    if kind in (ItemType.INTEGER, ItemType.NUMBER):
        low = int(value // 10 * 10)
        return f"{low}-{low + 9}"
    if kind is ItemType.DATETIME and isinstance(value, datetime):
        return value.astimezone(SHANGHAI).strftime("%Y-%m")
    if isinstance(value, date):
        return value.strftime("%Y-%m")
    if kind is ItemType.BOOLEAN:
        return "*"
    text = str(value)
    if _ID_RE.match(text):
        return text[:6]  # the issuing district
    return text[:3] + ("…" if len(text) > 3 else "")


@dataclass(frozen=True)
class PublishResult:
    rows: int
    k: int | None
    columns: dict[str, str]


def _transformed(session: Session, resource: CatalogResource) -> Iterator[dict[str, Any]]:
    table = source_table(resource)
    rules = {
        i["name"]: (PublishRule(i["publish_rule"]), ItemType(i["type"])) for i in resource.items
    }
    result = session.execute(select(table).order_by(table.c[datastore.ID_COLUMN]))
    for row in result.mappings():
        out: dict[str, Any] = {}
        for name, (rule, kind) in rules.items():
            value = row[name]
            if rule is PublishRule.KEEP:
                out[name] = value
            elif rule is PublishRule.MASK:
                out[name] = mask_value(value)
            elif rule is PublishRule.GENERALISE:
                out[name] = generalise_value(kind, value)
        yield out


def publish_copy(session: Session, resource: CatalogResource) -> PublishResult:
    """(Re)build the published copy inside the caller's transaction; raise 409 if k is too low.

    k is checked before anything is written, so a refusal leaves the previous copy (if any)
    as it was.
    """
    quasi = [
        i["name"]
        for i in resource.items
        if i.get("quasi_identifier") and i["publish_rule"] != PublishRule.SUPPRESS.value
    ]
    groups: Counter[tuple[Any, ...]] = Counter()

    def counted() -> Iterator[dict[str, Any]]:
        for row in _transformed(session, resource):
            if quasi:
                groups[tuple(row[q] for q in quasi)] += 1
            yield row

    # Read everything first: SQLite cannot write a table while a cursor over another is open.
    rows = list(counted())
    k: int | None = None
    if quasi and groups:
        combination, k = min(groups.items(), key=lambda kv: (kv[1], str(kv[0])))
        if k < resource.min_k:
            shown = ", ".join(f"{q}={v}" for q, v in zip(quasi, combination, strict=True))
            raise Problem.of(
                409,
                "k-anonymity",
                "catalog.k_anonymity",
                combination=shown,
                count=k,
                k=resource.min_k,
            )
    written = datastore.replace_table(session, published_table(resource), rows)
    columns = {s.name: s.type.value for s in published_specs(resource)}
    return PublishResult(written, k, columns)
