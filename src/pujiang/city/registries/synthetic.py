"""Deterministic synthetic registries for the demo and the benchmarks: the same seed (and the
same city) gives the same rows.

Every person, company and address is invented: names are drawn from common surnames and
given-name characters, ID numbers and credit codes carry valid check characters, residents
are spread over the districts by their 2020 census population. Rows come out as text under
the Chinese headers, exactly what a CSV file would hold, and go through the same import
pipeline as a real file.
"""

from __future__ import annotations

import bisect
import csv
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from sqlalchemy import text

from pujiang.city.reference import DistrictFact, districts
from pujiang.city.registries.checks import USCC_TYPES
from pujiang.city.registries.columns import COLUMNS, Kind
from pujiang.city.registries.locate import Locator, Place
from pujiang.platform.identifiers import make_org_code, uscc_check_char

if TYPE_CHECKING:
    from pujiang.city.registries.ingest import ImportReport
    from pujiang.platform.deps import AppContext

DEFAULT_SEED = 20200701  # 第七次全国人口普查的标准时点 (census reference day)

# Common surnames, roughly by frequency (weights are relative counts).
SURNAMES: tuple[tuple[str, int], ...] = (
    ("王", 100), ("李", 100), ("张", 95), ("刘", 72), ("陈", 70), ("杨", 46), ("黄", 33),
    ("赵", 28), ("吴", 28), ("周", 27), ("徐", 22), ("孙", 20), ("马", 20), ("朱", 19),
    ("胡", 18), ("郭", 17), ("何", 17), ("林", 16), ("罗", 15), ("高", 15), ("郑", 13),
    ("梁", 13), ("谢", 12), ("宋", 11), ("唐", 11), ("许", 10), ("韩", 10), ("冯", 9),
    ("邓", 9), ("曹", 9), ("彭", 8), ("曾", 8), ("肖", 8), ("田", 7), ("董", 7), ("袁", 7),
    ("潘", 7), ("于", 7), ("蒋", 7), ("蔡", 7), ("余", 6), ("杜", 6), ("叶", 6), ("程", 6),
    ("苏", 6), ("魏", 6), ("吕", 6), ("丁", 6), ("任", 5), ("沈", 8), ("姚", 5), ("卢", 5),
    ("姜", 5), ("崔", 5), ("钟", 5), ("谭", 5), ("陆", 6), ("汪", 5), ("范", 5), ("金", 5),
    ("石", 4), ("廖", 4), ("贾", 4), ("夏", 4), ("韦", 4), ("付", 4), ("方", 4), ("白", 4),
    ("邹", 4), ("孟", 4), ("熊", 4), ("秦", 4), ("邱", 4), ("江", 4), ("尹", 3), ("薛", 3),
    ("闫", 3), ("段", 3), ("雷", 3), ("侯", 3), ("龙", 3), ("史", 3), ("陶", 3), ("黎", 3),
    ("贺", 3), ("顾", 5), ("毛", 3), ("郝", 3), ("龚", 3), ("邵", 3), ("万", 3), ("钱", 3),
    ("严", 3), ("覃", 2), ("武", 2), ("戴", 2), ("莫", 2), ("孔", 2), ("向", 2), ("汤", 2),
    ("欧阳", 1), ("司马", 1), ("上官", 1), ("诸葛", 1),
)  # fmt: skip

# Characters common in given names; the neutral ones go with either sex.
GIVEN_MALE = (
    "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林阳建国志文博轩睿哲航毅峰晨东海亮"
)
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀玲桂英燕萍红雪琳婷慧莹倩颖洁佳琪欣怡雨涵梦诗晓瑶薇蕾璐丹妍"
GIVEN_NEUTRAL = "一子嘉思安乐心雅清文明晓天宏永春秋晨佳然"

# Road-name stems: Shanghai names its roads after provinces and cities, and after places and
# wishes of its own.
ROAD_STEMS = (
    "北京", "南京", "天津", "福州", "汉口", "九江", "宁波", "厦门", "广东", "浙江", "福建",
    "江西", "河南", "山东", "山西", "四川", "云南", "贵州", "广西", "西藏", "新疆", "青海",
    "甘肃", "陕西", "湖南", "湖北", "安徽", "江苏", "辽宁", "吉林", "长沙", "武汉", "重庆",
    "成都", "昆明", "南昌", "合肥", "杭州", "苏州", "无锡", "常州", "镇江", "扬州", "济南",
    "青岛", "大连", "沈阳", "长春", "太原", "郑州", "洛阳", "西安", "兰州", "桂林", "长寿",
    "延安", "淮海", "中山", "世纪", "锦绣", "龙华", "漕溪", "虹桥", "曹杨", "武宁", "真北",
    "共和", "殷高", "国权", "控江", "长阳", "江湾", "四平", "吴淞", "牡丹江", "友谊", "莘庄",
    "春申", "都市", "博乐", "人民", "环城", "金桥", "张江", "川沙", "祥和", "康乐", "丰收",
)  # fmt: skip
ROAD_SUFFIXES = (
    ("路", 70),
    ("东路", 6),
    ("西路", 6),
    ("南路", 5),
    ("北路", 5),
    ("中路", 4),
    ("街", 2),
    ("大道", 2),
)
ESTATE_SUFFIXES = ("新村", "小区", "花园", "苑", "公寓", "家园", "大厦", "广场")

# Households registered outside Shanghai (GB/T 2260 county codes and their names): about four
# in ten residents of Shanghai in 2020 had their 户籍 elsewhere.
OTHER_REGIONS = (
    ("320102", "江苏省南京市玄武区"), ("320583", "江苏省昆山市"),
    ("330106", "浙江省杭州市西湖区"), ("340104", "安徽省合肥市蜀山区"),
    ("410105", "河南省郑州市金水区"), ("420106", "湖北省武汉市武昌区"),
    ("510104", "四川省成都市锦江区"), ("360102", "江西省南昌市东湖区"),
    ("370102", "山东省济南市历下区"), ("430102", "湖南省长沙市芙蓉区"),
    ("350102", "福建省福州市鼓楼区"), ("110105", "北京市朝阳区"),
)  # fmt: skip
OTHER_REGION_SHARE = 0.4

# Age bands (years) and their rough weights in Shanghai's 2020 population.
AGE_BANDS = ((0, 15, 10), (15, 25, 9), (25, 40, 27), (40, 60, 30), (60, 80, 20), (80, 100, 4))

# Mobile network codes in use (MIIT numbering plan).
MOBILE_PREFIXES = (
    "134", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158", "159", "182",
    "183", "187", "188", "198", "130", "131", "132", "155", "156", "185", "186", "176", "133",
    "153", "180", "181", "189", "177", "199",
)  # fmt: skip

TRADE_NAMES = (
    "华信申通锦江东方宏达鼎盛恒泰瑞丰嘉禾博远明德新元汇通启航云帆智联鑫源隆昌永安和平凯旋天成"
)
INDUSTRIES = (
    "科技", "贸易", "餐饮管理", "物业管理", "建筑工程", "信息技术", "商务咨询", "文化传媒",
    "医药", "物流", "环保科技", "电子商务", "教育科技", "实业", "投资管理", "网络科技",
)  # fmt: skip
# (type text, credit code positions 1-2, weight)
ENTITY_FORMS = (
    ("有限责任公司（自然人投资或控股）", "91", 50),
    ("有限责任公司（自然人独资）", "91", 12),
    ("股份有限公司（非上市、自然人投资或控股）", "91", 4),
    ("有限责任公司（外商投资、非独资）", "91", 3),
    ("个人独资企业", "91", 3), ("个体工商户", "92", 20), ("农民专业合作社", "93", 1),
    ("社会团体", "51", 1), ("民办非企业单位", "52", 2),
)  # fmt: skip
SHOP_KINDS = ("便利店", "小吃店", "理发店", "水果店", "五金店", "面馆", "干洗店", "花店")
STATUSES = (("存续", 80), ("在业", 8), ("注销", 7), ("吊销", 4), ("迁出", 1))
USCC_BODY_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_ID_CHECK = "0123456789X"
T = TypeVar("T")


def _weighted(pairs: Sequence[tuple[str, int]]) -> tuple[list[str], list[float]]:
    total = 0.0
    values, cumulative = [], []
    for value, weight in pairs:
        total += weight
        values.append(value)
        cumulative.append(total)
    return values, cumulative


@dataclass(frozen=True)
class _Area:
    """Where points of a district are drawn: around its centroid, spread by its size."""

    fact: DistrictFact
    sigma_deg: float

    @classmethod
    def of(cls, fact: DistrictFact) -> _Area:
        # A quarter of the side of a square of the district's area, in degrees of latitude.
        return cls(fact, math.sqrt(fact.area_km2) / 4.0 / 111.0)


class Synth:
    """One generator; draws come in a fixed order, so a seed fixes every row."""

    def __init__(self, seed: int = DEFAULT_SEED, locator: Locator | None = None) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - invented data, not secrets
        self.locator = locator
        # The last located point of each district, for points that cannot be placed.
        self.anchors: dict[str, tuple[str, str, Place | None]] = {}
        self.areas = [_Area.of(d) for d in districts()]
        self.area_weights = _cumulative(d.population for d in districts())
        self.surnames, self.surname_weights = _weighted(SURNAMES)
        self.road_suffixes, self.road_suffix_weights = _weighted(ROAD_SUFFIXES)
        self.statuses, self.status_weights = _weighted(STATUSES)
        self.forms = [(text, code) for text, code, _ in ENTITY_FORMS]
        self.form_weights = _cumulative(w for _, _, w in ENTITY_FORMS)
        self.age_weights = _cumulative(w for _, _, w in AGE_BANDS)
        self.today = date(2026, 1, 1)  # fixed, so the data does not change with the clock

    # -- small draws ------------------------------------------------------------------------

    def pick(self, values: Sequence[T], cumulative: Sequence[float] | None = None) -> T:
        """One of `values`, uniformly or by cumulative weights (one random() either way)."""
        if cumulative is None:
            return values[int(self.rng.random() * len(values))]
        return values[bisect.bisect(cumulative, self.rng.random() * cumulative[-1])]

    def name(self, sex: str) -> str:
        pool = GIVEN_MALE if sex == "M" else GIVEN_FEMALE
        given = (
            self.pick(pool)
            if self.rng.random() < 0.3
            else self.pick(pool) + self.pick(pool + GIVEN_NEUTRAL)
        )
        return self.pick(self.surnames, self.surname_weights) + given

    def road(self) -> str:
        return self.pick(ROAD_STEMS) + self.pick(self.road_suffixes, self.road_suffix_weights)

    def area(self) -> _Area:
        return self.pick(self.areas, self.area_weights)

    def point(self, area: _Area) -> tuple[float, float]:
        lon0, lat0 = area.fact.centroid
        lat = lat0 + self.rng.gauss(0.0, area.sigma_deg)
        lon = lon0 + self.rng.gauss(0.0, area.sigma_deg) / math.cos(math.radians(lat0))
        return round(lon, 6), round(lat, 6)

    def birth_date(self) -> date:
        low, high, _ = self.pick(AGE_BANDS, self.age_weights)
        days = int(self.rng.uniform(low, high) * 365.25)
        return self.today - timedelta(days=days + 1)

    def mobile(self) -> str:
        return self.pick(MOBILE_PREFIXES) + f"{self.rng.randrange(100_000_000):08d}"

    def street_address(self, area: _Area) -> str:
        return f"上海市{area.fact.name}{self.road()}{self.rng.randrange(1, 1500)}号"

    # -- places -----------------------------------------------------------------------------

    def places(self, areas: list[_Area]) -> list[tuple[str, str, Place | None]]:
        """A point (as text) in each area's district, located when there is a locator.

        A point outside its district (or the city) is drawn again, up to eight times; then it
        takes the last point found in that district, or no point at all, so that a located
        file never holds a point the city cannot place.
        """
        points = [self.point(a) for a in areas]
        if self.locator is None:
            return [(f"{lon}", f"{lat}", None) for lon, lat in points]
        result: list[tuple[str, str, Place | None]] = [("", "", None)] * len(areas)
        todo = list(range(len(areas)))
        for attempt in range(8):
            found = self.locator([points[i][0] for i in todo], [points[i][1] for i in todo])
            if found is None:  # no city loaded: the points stay unlocated
                return [(f"{lon}", f"{lat}", None) for lon, lat in points]
            again = []
            for i, place in zip(todo, found, strict=True):
                code = areas[i].fact.code
                if place is not None and place.district_code == code:
                    result[i] = (f"{points[i][0]}", f"{points[i][1]}", place)
                    self.anchors[code] = result[i]
                elif attempt < 7:
                    again.append(i)
                    points[i] = self.point(areas[i])
                else:
                    result[i] = self.anchors.get(code, ("", "", None))
            todo = again
            if not todo:
                break
        return result

    # -- registries ---------------------------------------------------------------------------

    def persons(self, count: int, *, chunk: int = 5000) -> Iterator[list[str]]:
        """The header, then `count` residents: 姓名, 身份证号, 性别, 出生日期, 手机号, 户籍地址,
        居住地址, 居住地经度, 居住地纬度, 社区代码 (empty when unlocated)."""
        yield _header(Kind.PERSONS)
        issued: set[str] = set()
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            areas = [self.area() for _ in range(size)]
            for area, (lon, lat, place) in zip(areas, self.places(areas), strict=True):
                yield self._person(area, lon, lat, place, issued)

    def _person(
        self, area: _Area, lon: str, lat: str, place: Place | None, issued: set[str]
    ) -> list[str]:
        sex = "M" if self.rng.random() < 0.51 else "F"
        born = self.birth_date()
        if self.rng.random() < OTHER_REGION_SHARE:
            region, home_prefix = OTHER_REGIONS[int(self.rng.random() * len(OTHER_REGIONS))]
            home = f"{home_prefix}{self.road()}{self.rng.randrange(1, 300)}号"
        else:
            home_area = self.area()
            region = home_area.fact.code
            home = self.street_address(home_area)
        while True:
            sequence = self.rng.randrange(500) * 2 + (1 if sex == "M" else 0)
            first17 = f"{region}{born:%Y%m%d}{sequence:03d}"
            number = first17 + _ID_CHECK[(1 - 2 * int(first17, 13)) % 11]
            if number not in issued:
                issued.add(number)
                break
        phone = self.mobile() if born.year <= self.today.year - 12 else ""
        estate = self.pick(ROAD_STEMS) + self.pick(ESTATE_SUFFIXES)
        floor, flat = self.rng.randrange(1, 30), self.rng.randrange(1, 5)
        live = f"上海市{area.fact.name}{estate}{self.rng.randrange(1, 60)}号{floor}{flat:02d}室"
        return [
            number,
            self.name(sex),
            "男" if sex == "M" else "女",
            born.isoformat(),
            phone,
            home,
            live,
            lon,
            lat,
            _code(place, "community_code"),
        ]

    def entities(self, count: int, *, chunk: int = 2000) -> Iterator[list[str]]:
        """The header, then `count` legal entities with valid credit codes."""
        yield _header(Kind.ENTITIES)
        issued: set[str] = set()
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            areas = [self.area() for _ in range(size)]
            for area, (lon, lat, place) in zip(areas, self.places(areas), strict=True):
                yield self._entity(area, lon, lat, place, issued)

    def _entity(
        self, area: _Area, lon: str, lat: str, place: Place | None, issued: set[str]
    ) -> list[str]:
        form, prefix = self.pick(self.forms, self.form_weights)
        while True:
            # Bodies issued since 2015 begin with MA; older ones kept their numeric org code.
            if self.rng.random() < 0.7:
                body = "MA" + "".join(self.pick(USCC_BODY_CHARS) for _ in range(6))
            else:
                body = f"{self.rng.randrange(10_000_000, 99_999_999)}"
            first17 = prefix + area.fact.code + make_org_code(body)
            code = first17 + uscc_check_char(first17)
            if code not in issued:
                issued.add(code)
                break
        trade = self.pick(TRADE_NAMES) + self.pick(TRADE_NAMES)
        if prefix == "92":
            place_name = area.fact.name.removesuffix("区").removesuffix("新")
            name = f"{place_name}{trade}{self.pick(SHOP_KINDS)}"
        elif prefix in ("51", "52"):
            name = f"上海市{area.fact.name}{trade}{'协会' if prefix == '51' else '服务中心'}"
        elif prefix == "93":
            name = f"上海{trade}农业专业合作社"
        else:
            suffix = "股份有限公司" if form.startswith("股份") else "有限公司"
            name = f"上海{trade}{self.pick(INDUSTRIES)}{suffix}"
        sex = "M" if self.rng.random() < 0.6 else "F"
        founded = self.today - timedelta(days=self.rng.randrange(30, 30 * 365))
        return [
            code,
            name,
            form or USCC_TYPES.get(prefix, ""),
            self.street_address(area),
            self.name(sex),
            self.pick(self.statuses, self.status_weights),
            founded.isoformat(),
            lon,
            lat,
            _code(place, "community_code"),
        ]

    def addresses(self, count: int, *, chunk: int = 5000) -> Iterator[list[str]]:
        """The header, then `count` standard addresses with points (and unit grids)."""
        yield _header(Kind.ADDRESSES)
        used: set[str] = set()
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            areas = [self.area() for _ in range(size)]
            for area, (lon, lat, place) in zip(areas, self.places(areas), strict=True):
                while True:
                    address = self.street_address(area)
                    if address not in used:
                        used.add(address)
                        break
                building = ""
                if self.rng.random() < 0.5:
                    estate = self.pick(ROAD_STEMS) + self.pick(ESTATE_SUFFIXES)
                    building = f"{estate}{self.rng.randrange(1, 40)}号楼"
                yield [
                    address,
                    building,
                    lon,
                    lat,
                    _code(place, "grid_code"),
                    _code(place, "community_code"),
                ]


def _code(place: Place | None, level: str) -> str:
    return (getattr(place, level) or "") if place is not None else ""


def _cumulative(weights: Iterator[float] | Sequence[float]) -> list[float]:
    total = 0.0
    out = []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def _header(kind: Kind, exclude: set[str] | None = None) -> list[str]:
    return [c.zh for c in COLUMNS[kind] if c.field not in (exclude or set())]


def generate(
    kind: Kind, count: int, seed: int = DEFAULT_SEED, locator: Locator | None = None
) -> Iterator[list[str]]:
    """Header and rows of a synthetic registry."""
    synth = Synth(seed, locator)
    if kind is Kind.PERSONS:
        return synth.persons(count)
    if kind is Kind.ENTITIES:
        return synth.entities(count)
    return synth.addresses(count)


def write_csv(rows: Iterator[list[str]], out: Path | IO[str], encoding: str = "utf-8") -> int:
    """Write rows as CSV (utf-8, utf-8-sig, gbk or gb18030); returns the data rows written."""
    written = -1
    handle = out.open("w", encoding=encoding, newline="") if isinstance(out, Path) else out
    try:
        writer = csv.writer(handle)
        for row in rows:
            writer.writerow(row)
            written += 1
    finally:
        if isinstance(out, Path):
            handle.close()
    return max(written, 0)


# Modest sizes: the demo loads in a few seconds and still shows every district.
DEMO_SIZES: dict[Kind, int] = {Kind.PERSONS: 20_000, Kind.ENTITIES: 2_000, Kind.ADDRESSES: 5_000}


@dataclass(frozen=True)
class DemoRegistries:
    """What the demo loaded: a report per registry, None where it already had rows."""

    reports: dict[Kind, ImportReport | None]
    seconds: float

    def summary(self) -> str:
        parts_zh, parts_en = [], []
        for kind, report in self.reports.items():
            zh, en = kind.titles
            if report is None:
                parts_zh.append(f"{zh}已有数据")
                parts_en.append(f"{en} kept")
            else:
                parts_zh.append(f"{zh} {report.inserted} 条")
                parts_en.append(f"{en} {report.inserted}")
        return (
            f"合成基础库：{'，'.join(parts_zh)}（{self.seconds:.1f} 秒） / "
            f"synthetic registries: {', '.join(parts_en)} ({self.seconds:.1f} s)"
        )


def load_demo_registries(
    context: AppContext, sizes: dict[Kind, int] | None = None, seed: int = DEFAULT_SEED
) -> DemoRegistries:
    """Fill each empty registry with synthetic rows, located in the city if it is loaded.

    A registry that already has rows is left alone (None in the result), so real imports are
    never mixed with invented people and running the demo again changes nothing.
    """
    from pujiang.city.registries.ingest import TABLES, import_table
    from pujiang.city.registries.locate import city_locator
    from pujiang.platform import audit
    from pujiang.platform.tabular import rows_table

    started = time.perf_counter()
    locator = city_locator(context)
    reports: dict[Kind, ImportReport | None] = {}
    for kind, count in (sizes or DEMO_SIZES).items():
        with context.db.session() as session:
            table = TABLES[kind]
            if session.execute(text(f"SELECT 1 FROM {table} LIMIT 1")).first():  # noqa: S608
                reports[kind] = None
                continue
            rows = rows_table(generate(kind, count, seed, locator))
            # Rows were located while generated; importing them needs no second locate.
            report = import_table(
                session, kind, rows, source=f"synthetic seed={seed}", locator=locator
            )
            audit.append(
                session,
                actor="system:demo",
                action="registry.demo_load",
                target=f"registry:{kind.value}",
                detail=report.summary(),
            )
            reports[kind] = report
    return DemoRegistries(reports, time.perf_counter() - started)
