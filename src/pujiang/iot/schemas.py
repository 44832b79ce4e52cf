"""Provisioning documents of device ingest, in the FIWARE IoT Agent JSON shape.

Everything a client sends is checked here, field by field, so a bad document is refused with
the path of the faulty field (`devices.2.device_id`). Checks that need the database (does the
service group exist, is the id taken) live in `provisioning.py`.

The attribute lists are stored as validated here (`model_dump` of the item models), which is
the form `mapping.py` reads: attributes `{"object_id", "name", "type", ["unitCode"],
["sourceUnit"], ["metadata"]}`, static attributes `{"name", "type", "value", ["metadata"]}`,
commands `{"name", "type": "command"}`.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from pujiang.iot import units

# Attribute types a mapping may name. The IoT Agent (NGSI-v2) names are kept so FIWARE
# provisioning scripts work unchanged; "Property", "GeoProperty" and "Relationship" are the
# NGSI-LD kinds themselves.
NUMERIC_TYPES = frozenset({"Number", "Integer", "Float"})
ATTRIBUTE_TYPES = NUMERIC_TYPES | frozenset(
    {
        "Text",
        "String",
        "Boolean",
        "DateTime",
        "geo:point",
        "geo:json",
        "Object",
        "Array",
        "Relationship",
        "Property",
        "GeoProperty",
    }
)
# Names NGSI-LD keeps for itself on an entity or an attribute instance.
RESERVED_NAMES = frozenset(
    {
        "id",
        "type",
        "@context",
        "@id",
        "@type",
        "scope",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "observedAt",
        "unitCode",
        "datasetId",
    }
)
# Fields of FIWARE provisioning documents that mean nothing here (there is no separate
# Context Broker to point at); accepted and ignored so existing scripts keep working.
IGNORED_FIWARE_FIELDS = frozenset(
    {"cbroker", "trust", "timezone", "timestamp", "service", "subservice", "service_path"}
)
PROTOCOLS = frozenset({"IoTA-JSON", "PDI-IoTA-JSON"})
GEOJSON_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
)
MAX_ITEMS = 500  # groups or devices per request, attributes per list
MAX_INTERVAL = 30 * 24 * 3600  # an expected interval longer than a month is a mistake

APIKEY = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
UNIT_CODE = re.compile(r"^[A-Z0-9]{2,3}$")
_BAD_NAME = re.compile(r"[\s<>\"'=;()\\]")
_BAD_DEVICE_ID = re.compile(r"[/#+\s\x00-\x1f\x7f]")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+$")


def _ignore_fiware_fields(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k not in IGNORED_FIWARE_FIELDS}
    return data


def check_attribute_name(name: str) -> str:
    """An NGSI-LD attribute name: a short term or an IRI, not one NGSI-LD reserves."""
    if not name or len(name) > 256:
        raise ValueError("属性名须为 1–256 个字符 / an attribute name has 1–256 characters")
    if _BAD_NAME.search(name):
        raise ValueError(
            f"属性名 {name!r} 不能含空白或 < > \" ' = ; ( ) \\ / attribute name {name!r} "
            "must not contain whitespace or < > \" ' = ; ( ) \\"
        )
    if name in RESERVED_NAMES:
        raise ValueError(
            f"{name!r} 是 NGSI-LD 保留名，不能作属性名 / {name!r} is reserved by NGSI-LD"
        )
    return name


def check_entity_type(name: str) -> str:
    if not name or len(name) > 256 or _BAD_NAME.search(name) or name in RESERVED_NAMES:
        raise ValueError(
            f"实体类型 {name!r} 无效：1–256 个字符，不含空白或 < > \" ' = ; ( ) / invalid "
            f"entity type {name!r}: 1–256 characters, no whitespace or < > \" ' = ; ( )"
        )
    return name


def check_apikey(value: str) -> str:
    if not APIKEY.match(value):
        raise ValueError(
            f"apikey {value!r} 无效：1–64 个字母、数字、_ 或 - / invalid apikey {value!r}: "
            "1–64 letters, digits, _ or -"
        )
    return value


def check_device_id(value: str) -> str:
    if not 1 <= len(value) <= 128 or _BAD_DEVICE_ID.search(value):
        raise ValueError(
            f"设备编号 {value!r} 无效：1–128 个字符，不含 / # + 与空白（会破坏 MQTT 主题）/ "
            f"invalid device_id {value!r}: 1–128 characters without / # + or whitespace "
            "(they would break MQTT topics)"
        )
    return value


def check_uri(value: str, what: str) -> str:
    if len(value) > 512 or not _URI.match(value):
        raise ValueError(
            f"{what} {value!r} 不是 URI（如 urn:ngsi-ld:Type:1）/ {what} {value!r} is not a URI "
            "(e.g. urn:ngsi-ld:Type:1)"
        )
    return value


def check_http_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname or _BAD_NAME.search(value):
        raise ValueError(
            f"{what} {value!r} 须为 http:// 或 https:// 地址 / {what} {value!r} must be an "
            "http:// or https:// URL"
        )
    return value


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _is_geo_point(value: Any) -> bool:
    """The IoT Agent's geo:point text, "latitude, longitude"."""
    if not isinstance(value, str):
        return False
    parts = value.split(",")
    try:
        lat, lon = (float(p) for p in parts)
    except ValueError:
        return False
    return -90 <= lat <= 90 and -180 <= lon <= 180


def _is_geojson(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") in GEOJSON_TYPES
        and isinstance(value.get("coordinates"), list)
    )


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.tzinfo is not None


_VALUE_CHECKS: dict[str, tuple[Any, str]] = {
    "Number": (_is_number, "有限数值 / a finite number"),
    "Float": (_is_number, "有限数值 / a finite number"),
    "Integer": (
        lambda v: isinstance(v, int) and not isinstance(v, bool),
        "整数 / an integer",
    ),
    "Text": (lambda v: isinstance(v, str), "字符串 / a string"),
    "String": (lambda v: isinstance(v, str), "字符串 / a string"),
    "Boolean": (lambda v: isinstance(v, bool), "true 或 false / true or false"),
    "DateTime": (_is_datetime, "带时区的 ISO 8601 时间 / an ISO 8601 time with a zone"),
    "geo:point": (_is_geo_point, '"纬度, 经度" 文本 / "latitude, longitude" text'),
    "geo:json": (_is_geojson, "GeoJSON 几何 / a GeoJSON geometry"),
    "GeoProperty": (_is_geojson, "GeoJSON 几何 / a GeoJSON geometry"),
    "Object": (lambda v: isinstance(v, dict), "JSON 对象 / a JSON object"),
    "Array": (lambda v: isinstance(v, list), "JSON 数组 / a JSON array"),
    "Relationship": (
        lambda v: isinstance(v, str) and bool(_URI.match(v)),
        "实体 URI / an entity URI",
    ),
    "Property": (lambda v: v is not None, "任意非 null 值 / any value but null"),
}


def check_attribute_type(value: str) -> str:
    if value not in ATTRIBUTE_TYPES:
        raise ValueError(
            f"属性类型 {value!r} 不受支持；可用：{', '.join(sorted(ATTRIBUTE_TYPES))} / "
            f"unsupported attribute type {value!r}; use one of: "
            f"{', '.join(sorted(ATTRIBUTE_TYPES))}"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class UnitMetadata(_Strict):
    type: str = "Text"
    value: str


class AttributeMetadata(_Strict):
    unitCode: UnitMetadata | None = None  # noqa: N815 - the IoT Agent's field name


class AttributeMapping(_Strict):
    """A measure the device sends (`object_id`) and the attribute it becomes (`name`)."""

    object_id: str | None = Field(default=None, max_length=128)
    name: str
    type: str
    unitCode: str | None = None  # noqa: N815
    sourceUnit: str | None = None  # noqa: N815
    metadata: AttributeMetadata | None = None

    _name = field_validator("name")(check_attribute_name)
    _type = field_validator("type")(check_attribute_type)

    @field_validator("object_id")
    @classmethod
    def _object_id(cls, value: str | None) -> str | None:
        if value is not None and (not value or _BAD_DEVICE_ID.search(value)):
            raise ValueError(
                f"object_id {value!r} 无效：不能为空，不含 / # + 与空白 / invalid object_id "
                f"{value!r}: not empty, no / # + or whitespace"
            )
        return value

    @field_validator("unitCode", "sourceUnit")
    @classmethod
    def _unit(cls, value: str | None) -> str | None:
        if value is not None and not UNIT_CODE.match(value):
            raise ValueError(
                f"单位 {value!r} 不是 UN/CEFACT 代码（如 CEL、HPA）/ unit {value!r} is not a "
                "UN/CEFACT common code (e.g. CEL, HPA)"
            )
        return value

    @model_validator(mode="after")
    def _units_agree(self) -> AttributeMapping:
        if self.object_id is None:
            self.object_id = self.name  # the IoT Agent's default: the measure keeps its name
        meta_unit = (
            self.metadata.unitCode.value if self.metadata and self.metadata.unitCode else None
        )
        if meta_unit is not None:
            if self.unitCode is not None and self.unitCode != meta_unit:
                raise ValueError(
                    f"unitCode {self.unitCode} 与 metadata.unitCode {meta_unit} 不一致 / "
                    f"unitCode {self.unitCode} differs from metadata.unitCode {meta_unit}"
                )
            self.unitCode = meta_unit
            if not UNIT_CODE.match(meta_unit):
                raise ValueError(
                    f"metadata.unitCode {meta_unit!r} 不是 UN/CEFACT 代码 / metadata.unitCode "
                    f"{meta_unit!r} is not a UN/CEFACT common code"
                )
        if self.sourceUnit is not None:
            self._check_conversion()
        return self

    def _check_conversion(self) -> None:
        if self.type not in NUMERIC_TYPES | {"Property"}:
            raise ValueError(
                f"sourceUnit 只用于数值属性，{self.name} 的类型是 {self.type} / sourceUnit "
                f"applies to numeric attributes only; {self.name} is {self.type}"
            )
        if self.unitCode is None:
            raise ValueError(
                "给出 sourceUnit 时须同时给出 unitCode（存储单位）/ sourceUnit needs unitCode "
                "(the unit stored)"
            )
        try:
            units.converter(self.sourceUnit or "", self.unitCode)
        except ValueError as exc:
            raise ValueError(str(exc)) from None

    def stored(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class StaticAttribute(_Strict):
    """An attribute every entity of the group or device carries, whatever the device sends."""

    name: str
    type: str
    value: Any
    metadata: dict[str, Any] | None = None

    _name = field_validator("name")(check_attribute_name)
    _type = field_validator("type")(check_attribute_type)

    @model_validator(mode="after")
    def _value_fits_type(self) -> StaticAttribute:
        check, expected = _VALUE_CHECKS[self.type]
        if not check(self.value):
            raise ValueError(
                f"静态属性 {self.name} 的值须为{expected.split(' / ')[0]} / static attribute "
                f"{self.name} must be {expected.split(' / ')[1]} (type {self.type})"
            )
        return self

    def stored(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class CommandSpec(_Strict):
    """A command the device accepts; the entity shows `<name>_status` and `<name>_info`."""

    name: str
    type: Literal["command"] = "command"

    _name = field_validator("name")(check_attribute_name)

    def stored(self) -> dict[str, Any]:
        return self.model_dump()


def check_mapping_lists(
    attributes: list[AttributeMapping] | None,
    static_attributes: list[StaticAttribute] | None,
    commands: list[CommandSpec] | None,
) -> None:
    """One name means one thing: no measure mapped twice, no attribute named twice."""
    seen_objects: set[str] = set()
    for item in attributes or []:
        if item.object_id in seen_objects:
            raise ValueError(
                f"object_id {item.object_id!r} 重复映射 / object_id {item.object_id!r} is "
                "mapped twice"
            )
        seen_objects.add(item.object_id or "")
    names: set[str] = set()
    produced = [a.name for a in attributes or []] + [s.name for s in static_attributes or []]
    for command in commands or []:
        produced += [command.name, f"{command.name}_status", f"{command.name}_info"]
    for name in produced:
        if name in names:
            raise ValueError(
                f"属性名 {name!r} 在属性、静态属性和命令中出现了两次 / attribute name {name!r} "
                "appears twice among attributes, static attributes and commands"
            )
        names.add(name)


_LD_CONTEXT = AliasChoices("ld_context", "@context")
_EXPLICIT = AliasChoices("explicitAttrs", "explicit_attrs")
_Attributes = list[AttributeMapping]
_Statics = list[StaticAttribute]
_Commands = list[CommandSpec]


class _GroupFields(_Strict):
    """Fields a service group and its update share."""

    entity_type: str | None = None
    resource: str | None = None
    attributes: _Attributes | None = Field(default=None, max_length=MAX_ITEMS)
    static_attributes: _Statics | None = Field(default=None, max_length=MAX_ITEMS)
    commands: _Commands | None = Field(default=None, max_length=MAX_ITEMS)
    explicit_attrs: bool | None = Field(default=None, validation_alias=_EXPLICIT)
    expected_interval: int | None = Field(default=None, ge=1, le=MAX_INTERVAL)
    ld_context: str | None = Field(default=None, validation_alias=_LD_CONTEXT)
    description: str | None = Field(default=None, max_length=500)

    _pre = model_validator(mode="before")(_ignore_fiware_fields)

    @field_validator("entity_type")
    @classmethod
    def _entity_type(cls, value: str | None) -> str | None:
        return None if value is None else check_entity_type(value)

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^/[A-Za-z0-9_\-/.]{0,127}$", value):
            raise ValueError(
                f"resource {value!r} 须为以 / 开头的路径（如 /iot/json）/ resource {value!r} "
                "must be a path starting with / (e.g. /iot/json)"
            )
        return value

    @field_validator("ld_context")
    @classmethod
    def _ld_context(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value, "@context")

    @model_validator(mode="after")
    def _lists(self) -> _GroupFields:
        check_mapping_lists(self.attributes, self.static_attributes, self.commands)
        return self


class ServiceGroupIn(_GroupFields):
    """One service group of `POST /iot/services`."""

    apikey: str
    entity_type: str  # required here

    _apikey = field_validator("apikey")(check_apikey)


class ServiceGroupPatch(_GroupFields):
    """`PUT /iot/services`: only the fields given change; lists are replaced whole."""

    apikey: str | None = None  # accepted only when it names the group itself


class ServicesIn(_Strict):
    services: list[ServiceGroupIn] = Field(min_length=1, max_length=MAX_ITEMS)


class _DeviceFields(_Strict):
    """Fields a device and its update share."""

    entity_name: str | None = None
    entity_type: str | None = None
    transport: Literal["MQTT", "HTTP"] | None = None
    endpoint: str | None = None
    attributes: _Attributes | None = Field(default=None, max_length=MAX_ITEMS)
    static_attributes: _Statics | None = Field(default=None, max_length=MAX_ITEMS)
    commands: _Commands | None = Field(default=None, max_length=MAX_ITEMS)
    explicit_attrs: bool | None = Field(default=None, validation_alias=_EXPLICIT)
    expected_interval: int | None = Field(default=None, ge=1, le=MAX_INTERVAL)
    missed_intervals: int | None = Field(default=None, ge=1, le=1000)

    _pre = model_validator(mode="before")(_ignore_fiware_fields)

    @field_validator("transport", mode="before")
    @classmethod
    def _transport(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("entity_name")
    @classmethod
    def _entity_name(cls, value: str | None) -> str | None:
        return None if value is None else check_uri(value, "entity_name")

    @field_validator("entity_type")
    @classmethod
    def _entity_type(cls, value: str | None) -> str | None:
        return None if value is None else check_entity_type(value)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and len(value) > 2048:
            raise ValueError("endpoint 过长（最多 2048）/ endpoint too long (at most 2048)")
        return None if value is None else check_http_url(value, "endpoint")

    @model_validator(mode="after")
    def _lists(self) -> _DeviceFields:
        check_mapping_lists(self.attributes, self.static_attributes, self.commands)
        return self


class DeviceIn(_DeviceFields):
    """One device of `POST /iot/devices`."""

    device_id: str
    apikey: str | None = None
    protocol: str = "IoTA-JSON"

    _device_id = field_validator("device_id")(check_device_id)

    @field_validator("apikey")
    @classmethod
    def _apikey(cls, value: str | None) -> str | None:
        return None if value is None else check_apikey(value)

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        if value not in PROTOCOLS:
            raise ValueError(
                f"协议 {value!r} 不受支持；只支持 IoTA-JSON / unsupported protocol {value!r}; "
                "only IoTA-JSON is spoken"
            )
        return value

    @model_validator(mode="after")
    def _transport_fits(self) -> DeviceIn:
        if self.transport is not None:
            check_transport(self.transport, self.endpoint)
        return self


class DevicePatch(_DeviceFields):
    """`PUT /iot/devices/{device_id}`: only the fields given change; lists are replaced whole."""

    # Accepted only when unchanged: a device's identity and group are fixed at creation.
    device_id: str | None = None
    apikey: str | None = None
    protocol: str | None = None


class DevicesIn(_Strict):
    devices: list[DeviceIn] = Field(min_length=1, max_length=MAX_ITEMS)


def check_transport(transport: str, endpoint: str | None) -> None:
    """Commands reach an MQTT device over its topic; an endpoint makes sense for HTTP only."""
    if transport == "MQTT" and endpoint is not None:
        raise ValueError(
            "MQTT 设备不需要 endpoint（命令经 MQTT 下发）；HTTP 设备请设 transport=HTTP / "
            "an MQTT device takes no endpoint (commands go over MQTT); set transport HTTP "
            "for an HTTP device"
        )
