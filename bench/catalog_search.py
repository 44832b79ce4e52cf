"""Catalog search over 10,000 resources: bigram index vs a naive LIKE scan, p50/p95 in ms.

Run: .venv/bin/python bench/catalog_search.py [--resources N] [--database-url URL]
A temporary SQLite file is used unless a URL is given (it must be an empty database).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from datetime import date
from pathlib import Path

from sqlalchemy import func, insert, or_, select

from pujiang.app import build_context
from pujiang.catalog import search
from pujiang.catalog.models import CatalogResource, CatalogTerm
from pujiang.city.reference import districts
from pujiang.demo.seed import seed_departments
from pujiang.platform import db as dbtools
from pujiang.platform.models import Department
from pujiang.settings import Settings

SUBJECTS = (
    "公交线路实时到站", "公共停车场泊位", "空气质量监测", "河道断面水质", "社区门诊就诊",
    "食品经营许可", "房屋安全鉴定", "燃气管网压力", "城管执法案件", "12345热线工单",
    "中小学学校名录", "养老机构床位", "路灯运行状态", "电梯维保记录", "排水泵站运行",
    "气象观测", "地铁客流", "充电桩分布", "垃圾分类收运", "公园绿地",
)  # fmt: skip
SUFFIXES = ("统计", "明细", "月报", "实时数据", "名录", "分布", "GPS轨迹", "API")
THEMES = ("交通出行", "生态环保", "健康保障", "食品药品安全", "城乡建设", "公共服务")
FORMATS = ("电子表格", "数据库", "服务接口", "电子文件")
OPEN_TYPES = ("无条件开放", "有条件开放", "非开放")
QUERIES = (
    "公交", "公交线路", "空气质量", "水质", "门诊", "停车 统计", "地铁客流", "执法",
    "12345", "GPS", "公交 GPS", "黄浦区 停车", "养老", "电梯 维保", "充电桩", "api",
)  # fmt: skip


def fill(url: str, count: int) -> None:
    context = build_context(Settings(database_url=url))
    rng = random.Random(7)
    with context.db.session() as session:
        seed_departments(session)
        departments = list(session.execute(select(Department.id, Department.name)))
    names = [d.name for d in districts()]
    with context.db.session() as session:
        for start in range(0, count, 1000):
            rows, terms = [], []
            for n in range(start, min(start + 1000, count)):
                department_id, department_name = rng.choice(departments)
                title = f"{rng.choice(names)}{rng.choice(SUBJECTS)}{rng.choice(SUFFIXES)}"
                row = {
                    "id": n + 1,
                    "uid": str(uuid.UUID(int=n + 1)),
                    "name": f"dataset-{n}",
                    "code": f"3050{n // 1000:02d}{n % 1000:03d}/{n:06d}",
                    "title": title,
                    "summary": f"{department_name}发布的{title}数据，按{rng.choice(SUFFIXES)}更新",
                    "department_id": department_id,
                    "format": rng.choice(FORMATS),
                    "share_type": "无条件共享",
                    "open_type": rng.choice(OPEN_TYPES),
                    "update_cycle": "月",
                    "released_on": date(2023, 1 + n % 12, 1 + n % 28),
                    "theme": rng.choice(THEMES),
                    "tags": [],
                    "related_codes": [],
                    "items": [{"name": "名称", "type": "string", "description": ""}],
                    "created_by": "bench",
                }
                rows.append(row)
                resource = CatalogResource(**row)
                weights = search.weighted_terms(resource, department_name)
                terms += [
                    {"term": t, "resource_id": n + 1, "weight": w} for t, w in weights.items()
                ]
            session.execute(insert(CatalogResource), rows)
            session.execute(insert(CatalogTerm), terms)
    context.db.dispose()


def naive(session: object, q: str) -> tuple[int, list[int], dict[str, Counter[str]]]:
    """The baseline: LIKE over title and summary for every word, facets counted over the hits."""
    words = q.split()
    columns = (CatalogResource.id, CatalogResource.department_id, CatalogResource.theme,
               CatalogResource.format, CatalogResource.open_type)  # fmt: skip
    statement = select(*columns)
    for word in words:
        pattern = f"%{word}%"
        statement = statement.where(
            or_(CatalogResource.title.ilike(pattern), CatalogResource.summary.ilike(pattern))
        )
    rows = session.execute(statement).all()  # type: ignore[attr-defined]
    facets = {name: Counter(r[i + 1] for r in rows) for i, name in enumerate(search.FACET_FIELDS)}
    return len(rows), [r[0] for r in rows[:20]], facets


def measure(label: str, run: object, rounds: int) -> list[float]:
    timings = []
    for _ in range(rounds):
        for q in QUERIES:
            started = time.perf_counter()
            run(q)  # type: ignore[operator]
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def report(label: str, timings: list[float]) -> float:
    ordered = sorted(timings)
    p50 = statistics.median(ordered)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    print(f"{label:<34} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms   ({len(ordered)} queries)")
    return p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        dbtools.upgrade(url)
        started = time.perf_counter()
        fill(url, args.resources)
        elapsed = time.perf_counter() - started
        print(f"indexed {args.resources} resources in {elapsed:.1f} s ({url.split(':')[0]})")
        context = build_context(Settings(database_url=url))
        with context.db.session() as session:
            terms = session.execute(select(func.count()).select_from(CatalogTerm)).scalar_one()
            print(f"{terms} index rows")
            hits = search.search(session, search.SearchQuery(q="公交", limit=20))
            print(f"'公交' -> {hits.total} hits; facets {list(hits.facets)}")

            def indexed(q: str) -> object:
                return search.search(session, search.SearchQuery(q=q, limit=20))

            indexed_p95 = report("bigram index + facets", measure("index", indexed, args.rounds))
            baseline_p95 = report(
                "baseline: LIKE scan + facets",
                measure("like", lambda q: naive(session, q), args.rounds),
            )
        context.db.dispose()
        print(
            f"p95 ratio baseline/index: {baseline_p95 / indexed_p95:.1f}x; target p95 < 50 ms: "
            f"{'met' if indexed_p95 < 50 else 'NOT met'}"
        )
        # Timings move with what else the machine runs: print its load beside them.
        print(f"load average (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
              f"{os.cpu_count()} CPUs")  # fmt: skip


if __name__ == "__main__":
    main()
