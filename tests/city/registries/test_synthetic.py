"""Synthetic registries: deterministic, valid identifiers, spread like the population."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from pujiang.city.reference import districts
from pujiang.city.registries.columns import COLUMNS, Kind
from pujiang.city.registries.models import Address, LegalEntity, Person
from pujiang.city.registries.synthetic import generate, load_demo_registries, write_csv
from pujiang.platform.deps import AppContext
from pujiang.platform.identifiers import (
    is_valid_id_number,
    is_valid_uscc,
    normalise_mobile,
    validate_id_number,
)
from tests.city.registries.conftest import fake_locator


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    for kind in Kind:
        first = list(generate(kind, 300, seed=7))
        assert first == list(generate(kind, 300, seed=7))
        assert first[1:] != list(generate(kind, 300, seed=8))[1:]
        assert first[0] == [c.zh for c in COLUMNS[kind]]
        assert len(first) == 301


def test_persons_are_valid_and_spread_by_population() -> None:
    rows = list(generate(Kind.PERSONS, 4000, seed=1))[1:]
    numbers = [row[0] for row in rows]
    assert len(set(numbers)) == len(numbers)
    assert all(is_valid_id_number(n) for n in numbers)
    for row in rows[:500]:
        info = validate_id_number(row[0])
        assert row[2] == ("男" if info.sex == "M" else "女")
        assert row[3] == info.birth_date.isoformat()
        assert 2 <= len(row[1]) <= 4
        if row[4]:
            assert normalise_mobile(row[4]) == row[4]
    # Residence district from the address text: Pudong (5.7 M) far above Huangpu (0.66 M).
    counts = Counter(next(d.code for d in districts() if d.name in row[6]) for row in rows)
    assert counts["310115"] > 4 * counts["310101"] > 0
    # About four in ten households are registered outside Shanghai.
    outside = sum(not n.startswith("31") for n in numbers)
    assert 0.3 < outside / len(numbers) < 0.5


def test_entities_have_valid_credit_codes() -> None:
    rows = list(generate(Kind.ENTITIES, 1000, seed=1))[1:]
    codes = [row[0] for row in rows]
    assert len(set(codes)) == len(codes)
    assert all(is_valid_uscc(code) for code in codes)
    assert any(code[8:10] == "MA" for code in codes)  # letter-bearing organisation codes
    assert {row[5] for row in rows} <= {"存续", "在业", "注销", "吊销", "迁出"}


def test_located_rows_carry_their_codes() -> None:
    rows = list(generate(Kind.ADDRESSES, 200, seed=3, locator=fake_locator()))[1:]
    assert len({row[0] for row in rows}) == 200
    # The fake city is one community of 黄浦区, so only its points locate to its district.
    for row in rows:
        if row[4]:
            assert row[0].startswith("上海市黄浦区")
            assert (row[4], row[5]) == ("310101002001007", "310101002001")


def test_write_csv_in_gbk(tmp_path: Path) -> None:
    path = tmp_path / "persons.csv"
    assert write_csv(generate(Kind.PERSONS, 50), path, "gbk") == 50
    assert path.read_bytes().decode("gbk").startswith("身份证号,姓名")
    out = io.StringIO()
    assert write_csv(generate(Kind.ENTITIES, 5), out) == 5


def test_demo_load_imports_once(context: AppContext) -> None:
    sizes = {Kind.PERSONS: 500, Kind.ENTITIES: 100, Kind.ADDRESSES: 200}
    loaded = load_demo_registries(context, sizes)
    assert {kind: r.inserted for kind, r in loaded.reports.items() if r} == sizes
    assert "人口基础库 500 条" in loaded.summary()
    with context.db.session() as session:
        for model, size in ((Person, 500), (LegalEntity, 100), (Address, 200)):
            assert session.scalar(select(func.count()).select_from(model)) == size
    # Running the demo again leaves the registries alone.
    again = load_demo_registries(context, sizes)
    assert again.reports == dict.fromkeys(sizes)
    assert "population registry kept" in again.summary()
