"""Errors a client caused, raised by the broker (`service.py` and the modules beside it);
the HTTP adapter (`ngsild.py`) maps each error's `kind` to ProblemDetails."""

from __future__ import annotations

from typing import Any

# -- errors the adapter maps to ProblemDetails --------------------------------------------------


class BrokerError(Exception):
    """An error a client caused; `kind` names the NGSI-LD error type."""

    kind = "BadRequestData"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class BadData(BrokerError, ValueError):
    kind = "BadRequestData"


class InvalidRequest(BrokerError):
    kind = "InvalidRequest"


class NotFound(BrokerError):
    kind = "ResourceNotFound"


class AlreadyExists(BrokerError):
    kind = "AlreadyExists"


class NotSupported(BrokerError):
    kind = "OperationNotSupported"


class TooManyResults(BrokerError):
    kind = "TooManyResults"


class NonexistentTenant(BrokerError):
    kind = "NonexistentTenant"
