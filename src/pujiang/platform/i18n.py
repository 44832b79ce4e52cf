"""User-facing messages in 简体中文 (default) and English, chosen per request.

Messages are kept in one catalogue keyed by a stable id; modules add theirs with `register`.
The request's language lives in a context variable set by the middleware from Accept-Language.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

ZH = "zh-CN"
EN = "en"
SUPPORTED = (ZH, EN)

current_language: ContextVar[str] = ContextVar("pujiang_language", default=ZH)

_CATALOGUE: dict[str, tuple[str, str]] = {}


def register(messages: dict[str, tuple[str, str]]) -> None:
    """Add (zh, en) message pairs; a module calls this once with its own keys."""
    duplicate = _CATALOGUE.keys() & messages.keys()
    changed = {key for key in duplicate if _CATALOGUE[key] != messages[key]}
    if changed:
        raise ValueError(f"message keys registered twice with different text: {sorted(changed)}")
    _CATALOGUE.update(messages)


def translate(key: str, language: str | None = None, /, **params: Any) -> str:
    """The message for `key` in `language` (default: the request's), with {params} filled in."""
    zh, en = _CATALOGUE.get(key, (key, key))
    template = en if (language or current_language.get()) == EN else zh
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        return template


def negotiate(accept_language: str | None, default: str = ZH) -> str:
    """Pick zh-CN or en from an Accept-Language header, honouring q-values."""
    if not accept_language:
        return default
    best, best_q = default, -1.0
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        tag = tag.strip().lower()
        language = ZH if tag.startswith("zh") else EN if tag.startswith("en") else None
        # Earlier tags win ties, as browsers list preferences in order.
        if language and q > best_q and q > 0:
            best, best_q = language, q - position * 1e-6
    return best


register(
    {
        "problem.validation-error": ("请求数据无效", "Invalid request data"),
        "problem.bad-request": ("请求无效", "Bad request"),
        "problem.not-found": ("未找到", "Not found"),
        "problem.unauthorized": ("未认证", "Not authenticated"),
        "problem.invalid-credentials": ("用户名或密码错误", "Wrong username or password"),
        "problem.invalid-token": ("令牌无效或已过期", "Invalid or expired token"),
        "problem.forbidden": ("无权访问", "Forbidden"),
        "problem.account-locked": ("账户已锁定", "Account locked"),
        "problem.account-disabled": ("账户已停用", "Account disabled"),
        "problem.too-many-attempts": ("尝试过于频繁", "Too many attempts"),
        "problem.payload-too-large": ("请求体过大", "Request body too large"),
        "problem.conflict": ("与现有数据冲突", "Conflicts with existing data"),
        "problem.method-not-allowed": ("不支持该请求方法", "Method not allowed"),
        "problem.unsupported-media-type": ("不支持的内容类型", "Unsupported media type"),
        "problem.internal-error": ("服务器内部错误", "Internal server error"),
        "problem.unavailable": ("服务暂不可用", "Service unavailable"),
        "error.internal": (
            "服务器内部错误，请凭请求编号 {request_id} 联系管理员",
            "Internal error; quote request id {request_id} to the administrator",
        ),
        "error.not_found_path": ("路径 {path} 不存在", "No such path: {path}"),
        "error.no_such": ("{kind} {id} 不存在", "No {kind} {id}"),
        "error.method_not_allowed": (
            "路径 {path} 不支持 {method} 方法",
            "{method} is not allowed on {path}",
        ),
        "error.body_too_large": (
            "请求体超过 {limit} 字节的上限",
            "Request body exceeds the limit of {limit} bytes",
        ),
        "error.field_invalid": (
            "字段 {field} 的值 {value} 无效：{reason}",
            "Field {field} has an invalid value {value}: {reason}",
        ),
        "error.field_missing": ("缺少必填字段 {field}", "Missing required field {field}"),
        "error.field_unknown": (
            "不允许的字段 {field}（值 {value}）",
            "Unknown field {field} (value {value}) is not allowed",
        ),
        "error.invalid_json": (
            "请求体不是有效的 JSON：{reason}",
            "Body is not valid JSON: {reason}",
        ),
    }
)
