"""The demo city's catalog: realistic resources across the seeded departments, some open, some
conditional, some not shared, two of them live views. Deterministic (a seeded generator) and
idempotent: a resource that exists is left as it is."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pujiang.catalog import opendata, service
from pujiang.catalog.models import CatalogResource
from pujiang.catalog.schemas import ResourceIn
from pujiang.catalog.views import CASE_STATISTICS_ITEMS
from pujiang.city.reference import districts
from pujiang.platform.security import build_principal

Rows = list[dict[str, Any]]
START = datetime(2024, 5, 6, 8, 0, tzinfo=UTC)
ROUTES = ("71路", "49路", "20路", "926路", "167路", "中运量71路", "15路", "123路")
STOPS = ("外滩", "人民广场", "静安寺", "徐家汇", "陆家嘴", "中山公园", "五角场", "世纪大道")


def _item(name: str, kind: str, **flags: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, **flags}


def _bus(rng: random.Random) -> Rows:
    return [
        {
            "线路名称": rng.choice(ROUTES),
            "站点": rng.choice(STOPS),
            "预计到站": START + timedelta(minutes=i),
            "距离米": rng.randint(50, 3000),
        }
        for i in range(240)
    ]


def _parking(rng: random.Random) -> Rows:
    return [
        {
            "停车场名称": f"{d.name}{n}号公共停车场",
            "区名称": d.name,
            "总泊位": (total := rng.randint(80, 600)),
            "空余泊位": rng.randint(0, total),
        }
        for d in districts()
        for n in range(1, 4)
    ]


def _air(rng: random.Random) -> Rows:
    return [
        {
            "监测点": d.name,
            "时间": START + timedelta(hours=h),
            "AQI": rng.randint(25, 160),
            "PM2_5": round(rng.uniform(8, 110), 1),
        }
        for d in districts()
        for h in range(24)
    ]


def _water(rng: random.Random) -> Rows:
    rivers = ("苏州河", "黄浦江", "蕰藻浜", "淀浦河", "川杨河")
    return [
        {
            "断面": f"{r}{n}号断面",
            "监测日期": date(2024, m, 15),
            "溶解氧": round(rng.uniform(3, 9), 2),
            "水质类别": rng.choice(("II", "III", "IV", "V")),
        }
        for r in rivers
        for n in (1, 2)
        for m in range(1, 5)
    ]


def _clinic(rng: random.Random) -> Rows:
    surnames = "王李张刘陈杨黄赵周吴"
    rows = []
    for i in range(600):  # four districts, six age bands: groups of about 25 pass k = 5
        district = rng.choice(districts()[:4])
        age = rng.randint(20, 79)
        birth = 2024 - age
        rows.append(
            {
                "姓名": rng.choice(surnames) + rng.choice("伟芳娜敏静磊洋艳"),
                "身份证号": f"{district.code}{birth}0{rng.randint(1, 9)}1{rng.randint(0, 9)}"
                f"{i % 10}{rng.randint(0, 9)}{rng.randint(0, 9)}X",
                "区名称": district.name,
                "年龄": age,
                "就诊次数": rng.randint(1, 12),
            }
        )
    return rows


def _licences(rng: random.Random) -> Rows:
    kinds = ("餐饮服务", "食品销售", "单位食堂")
    return [
        {
            "许可证编号": f"JY3{d.code}{n:06d}",
            "经营者名称": f"{d.name}{rng.choice(('味道', '小笼', '本帮', '便利'))}{n}号店",
            "经营项目": rng.choice(kinds),
            "有效期至": date(2026, 1 + n % 12, 1),
        }
        for d in districts()
        for n in range(1, 5)
    ]


def _hotline(rng: random.Random) -> Rows:
    return [
        {
            "月份": f"2024-{m:02d}",
            "区名称": d.name,
            "受理量": rng.randint(800, 9000),
            "按时办结率": round(rng.uniform(0.9, 1.0), 3),
        }
        for m in range(1, 5)
        for d in districts()
    ]


BASE: dict[str, Any] = {"released_on": "2024-03-01", "share_conditions": "", "share_basis": ""}

# (body, rows, open?) — bodies are ResourceIn fields.
CATALOG: tuple[tuple[dict[str, Any], Callable[[random.Random], Rows] | None, bool], ...] = (
    (
        {
            "name": "bus-arrivals",
            "code": "305001001/000001",
            "title": "公交线路实时到站",
            "summary": "全市公交线路各站点的实时到站预测，来自车载 GPS",
            "department_code": "JT",
            "format": "服务接口",
            "items": [
                _item("线路名称", "字符型"),
                _item("站点", "字符型"),
                _item("预计到站", "日期时间型"),
                _item("距离米", "整型"),
            ],
            "share_type": "无条件共享",
            "open_type": "无条件开放",
            "update_cycle": "实时",
            "theme": "交通出行",
            "tags": ["公交", "到站", "GPS"],
        },
        _bus,
        True,
    ),
    (
        {
            "name": "public-parking",
            "code": "305001002/000001",
            "title": "公共停车场泊位信息",
            "summary": "公共停车信息平台汇集的各公共停车场总泊位与空余泊位",
            "department_code": "JT",
            "format": "服务接口",
            "items": [
                _item("停车场名称", "string", key=True),
                _item("区名称", "string"),
                _item("总泊位", "integer"),
                _item("空余泊位", "integer"),
            ],
            "share_type": "无条件共享",
            "open_type": "无条件开放",
            "update_cycle": "日",
            "theme": "交通出行",
            "tags": ["停车", "泊位"],
        },
        _parking,
        True,
    ),
    (
        {
            "name": "air-quality-hourly",
            "code": "305003001/000001",
            "title": "空气质量小时监测数据",
            "summary": "各区空气质量监测点的小时 AQI 与 PM2.5 浓度",
            "department_code": "STHJ",
            "format": "数据库",
            "items": [
                _item("监测点", "string", key=True),
                _item("时间", "datetime", key=True),
                _item("AQI", "integer"),
                _item("PM2_5", "number", description="微克/立方米"),
            ],
            "share_type": "无条件共享",
            "open_type": "无条件开放",
            "update_cycle": "日",
            "theme": "生态环保",
            "tags": ["空气质量", "AQI", "PM2.5"],
        },
        _air,
        True,
    ),
    (
        {
            "name": "river-water-quality",
            "code": "305003002/000001",
            "title": "主要河道断面水质",
            "summary": "主要河道监测断面的溶解氧与水质类别月报",
            "department_code": "SW",
            "format": "电子表格",
            "items": [
                _item("断面", "string", key=True),
                _item("监测日期", "date", key=True),
                _item("溶解氧", "number"),
                _item("水质类别", "string"),
            ],
            "share_type": "有条件共享",
            "share_conditions": "用于水环境治理与河长制考核",
            "share_basis": "《上海市河道管理条例》",
            "open_type": "有条件开放",
            "open_conditions": "科研与公益用途，签署数据使用协议",
            "update_cycle": "月",
            "theme": "生态环保",
            "tags": ["水质", "河道"],
        },
        _water,
        True,
    ),
    (
        {
            "name": "clinic-visits",
            "code": "305004001/000001",
            "title": "社区卫生服务中心门诊就诊记录",
            "summary": "社区卫生服务中心门诊的就诊人次（含个人信息，开放时脱敏）",
            "department_code": "WJ",
            "format": "数据库",
            "items": [
                _item("姓名", "string", personal=True, publish_rule="suppress"),
                _item("身份证号", "string", personal=True, publish_rule="mask", key=True),
                _item("区名称", "string", quasi_identifier=True),
                _item("年龄", "integer", quasi_identifier=True, publish_rule="generalise"),
                _item("就诊次数", "integer"),
            ],
            "share_type": "有条件共享",
            "share_conditions": "仅用于公共卫生管理，个人信息须脱敏",
            "share_basis": "《中华人民共和国个人信息保护法》第十三条",
            "open_type": "有条件开放",
            "open_conditions": "公共卫生研究，签署数据使用协议",
            "update_cycle": "月",
            "theme": "健康保障",
            "tags": ["门诊", "社区卫生"],
            "min_k": 5,
        },
        _clinic,
        True,
    ),
    (
        {
            "name": "food-licences",
            "code": "105005001/000001",
            "title": "食品经营许可证",
            "summary": "食品经营许可证电子证照信息",
            "department_code": "SCJG",
            "format": "数据库",
            "base_registry": "电子证照",
            "items": [
                _item("许可证编号", "string", key=True),
                _item("经营者名称", "string"),
                _item("经营项目", "string"),
                _item("有效期至", "date"),
            ],
            "share_type": "无条件共享",
            "open_type": "无条件开放",
            "update_cycle": "日",
            "theme": "食品药品安全",
            "tags": ["食品安全", "许可证", "电子证照"],
        },
        _licences,
        True,
    ),
    (
        {
            "name": "district-population",
            "code": "103001001/000001",
            "title": "各区常住人口与面积",
            "summary": "各区常住人口、面积与人口密度（第七次全国人口普查），平台实时视图",
            "department_code": "DSJ",
            "format": "服务接口",
            "base_registry": "人口",
            "items": [
                _item("区划代码", "string", key=True),
                _item("区名称", "string"),
                _item("常住人口", "integer"),
                _item("面积_平方公里", "number"),
                _item("人口密度", "number"),
            ],
            "share_type": "无条件共享",
            "open_type": "无条件开放",
            "update_cycle": "年",
            "theme": "公共服务",
            "tags": ["人口", "区划"],
            "live_view": "city.district_population",
        },
        None,
        True,
    ),
    (
        {
            "name": "government-departments",
            "code": "305006001/000001",
            "title": "政务部门名录",
            "summary": "接入平台的政务部门及其层级，平台实时视图",
            "department_code": "DSJ",
            "format": "服务接口",
            "items": [
                _item("部门代码", "string", key=True),
                _item("部门名称", "string"),
                _item("层级", "string"),
                _item("所属区划代码", "string"),
                _item("账户数", "integer"),
            ],
            "share_type": "无条件共享",
            "open_type": "无条件开放",
            "update_cycle": "日",
            "theme": "公共服务",
            "tags": ["部门", "机构"],
            "live_view": "platform.departments",
        },
        None,
        True,
    ),
    (
        {
            "name": "hotline-monthly",
            "code": "205007001/000001",
            "title": "12345 市民热线工单月度统计",
            "summary": "按区统计的 12345 热线受理量与按时办结率",
            "department_code": "RX12345",
            "format": "电子表格",
            "items": [
                _item("月份", "string", key=True),
                _item("区名称", "string", key=True),
                _item("受理量", "integer"),
                _item("按时办结率", "number"),
            ],
            "share_type": "无条件共享",
            "open_type": "无条件开放",
            "update_cycle": "月",
            "theme": "社区治理",
            "tags": ["12345", "热线", "工单"],
        },
        _hotline,
        True,
    ),
    (
        {
            "name": "case-statistics-monthly",
            "code": "205011001/000001",
            "title": "各区网格化管理案件月度统计",
            "summary": "按区、按月统计的城市网格化管理案件：各状态案件数与综合评价指标"
            "（立案率、按期处置率、结案率等），近十二个完整月，平台实时视图",
            "department_code": "CYZX",
            "format": "服务接口",
            "items": [
                _item(name, kind, description=description, key=key in ("month", "district_code"))
                for key, name, kind, description in CASE_STATISTICS_ITEMS
            ],
            "share_type": "无条件共享",
            "open_type": "无条件开放",
            "update_cycle": "月",
            "theme": "城市管理",
            "tags": ["网格化管理", "案件", "月度统计"],
            "live_view": "cases.monthly_by_district",
        },
        None,
        True,
    ),
    (
        {
            "name": "building-safety",
            "code": "305008001/000001",
            "title": "房屋安全鉴定结果",
            "summary": "既有房屋安全鉴定的结论与等级",
            "department_code": "ZJ",
            "format": "电子文件",
            "items": [
                _item("房屋地址", "string"),
                _item("鉴定等级", "string"),
                _item("鉴定日期", "date"),
            ],
            "share_type": "有条件共享",
            "share_conditions": "用于城市更新与应急管理",
            "share_basis": "《上海市房屋使用安全管理办法》",
            "open_type": "非开放",
            "update_cycle": "季",
            "theme": "城乡建设",
            "tags": ["房屋安全"],
        },
        None,
        False,
    ),
    (
        {
            "name": "gas-network-pressure",
            "code": "305009001/000001",
            "title": "燃气管网压力监测",
            "summary": "燃气输配管网关键节点的压力监测数据",
            "department_code": "RQ",
            "format": "数据库",
            "items": [
                _item("监测点编号", "string"),
                _item("时间", "datetime"),
                _item("压力_兆帕", "number"),
            ],
            "share_type": "不予共享",
            "share_basis": "涉及城市生命线安全，按《关键信息基础设施安全保护条例》不予共享",
            "open_type": "非开放",
            "update_cycle": "实时",
            "theme": "安全生产",
            "tags": ["燃气", "管网"],
        },
        None,
        False,
    ),
    (
        {
            "name": "enforcement-cases",
            "code": "305010001/000001",
            "title": "城管执法案件",
            "summary": "城管执法案件的立案、处罚与结案信息",
            "department_code": "CGZF",
            "format": "数据库",
            "items": [
                _item("案件编号", "string", key=True),
                _item("当事人", "string", personal=True),
                _item("联系电话", "string", personal=True, publish_rule="mask"),
                _item("案由", "string"),
                _item("立案日期", "date"),
            ],
            "share_type": "有条件共享",
            "share_conditions": "用于联合执法与信用监管",
            "share_basis": "《上海市城市管理综合行政执法条例》",
            "open_type": "非开放",
            "update_cycle": "日",
            "theme": "城市管理",
            "tags": ["执法", "案件"],
        },
        None,
        False,
    ),
)


def load_demo_catalog(session: Session) -> int:
    """Register, fill and open the demo resources that are missing; returns how many were added."""
    system = build_principal(0, "demo", "service", None, None, ["admin"])
    existing = set(session.scalars(select(CatalogResource.name)))
    rng = random.Random(20240506)  # noqa: S311 - demo data, not security
    added = 0
    for body, produce, open_it in CATALOG:
        rows = produce(rng) if produce else None  # draw even if skipped: same data every run
        if body["name"] in existing:
            continue
        resource = service.create_resource(session, system, ResourceIn(**{**BASE, **body}))
        if rows is not None:
            service.store_rows(session, resource, rows, append=False)
        if open_it:
            opendata.open_resource(session, system, resource.name)
        added += 1
    return added
