"""Typed exceptions for tribunal's error body `{"error": {"kind", "message", "field", "request_id"}}`.

One class per `ErrorKind` the server can send, so callers catch what they can act on
(`except RateLimited`, `except InvalidInput as e: print(e.field)`) instead of reading
status codes. The class is chosen by the body's `kind`, not the status: the kind is
the server's own vocabulary, and statuses are only its HTTP spelling.
"""

from __future__ import annotations

import json
from typing import Dict, Optional, Type

import httpx

__all__ = [
    "TribunalError",
    "InvalidInput",
    "Unauthenticated",
    "Forbidden",
    "NotFound",
    "Conflict",
    "TooLarge",
    "RateLimited",
    "Timeout",
    "Unavailable",
    "InternalError",
    "IoError",
    "UnexpectedResponse",
    "error_from_response",
]


class TribunalError(Exception):
    """A request tribunal refused or failed; `kind`, `field` and `request_id` come from its body."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        status: int,
        field: Optional[str] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.field = field
        self.request_id = request_id

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        rid = f" [request {self.request_id}]" if self.request_id else ""
        # The server's message may already start with its kind ("forbidden: ..."):
        # say the kind once.
        prefix = f"{self.kind}: "
        body = self.message[len(prefix):] if self.message.startswith(prefix) else self.message
        return f"{self.kind}{where}: {body}{rid}"


class InvalidInput(TribunalError):
    """400: the request is malformed; `field` names the offending path."""


class Unauthenticated(TribunalError):
    """401: no API key, or one the server does not know."""


class Forbidden(TribunalError):
    """403: the key's role may not call this operation."""


class NotFound(TribunalError):
    """404: no such resource (or it belongs to another key)."""


class Conflict(TribunalError):
    """409: the resource exists with other content (a rubric version, a set name)."""


class TooLarge(TribunalError):
    """413: the body or the job is over the server's limit."""


class RateLimited(TribunalError):
    """429: over the key's quota; `retry_after` is the server's `Retry-After` in seconds."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        status: int,
        field: Optional[str] = None,
        request_id: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message, kind=kind, status=status, field=field, request_id=request_id)
        self.retry_after = retry_after


class Timeout(TribunalError):
    """504: the judges did not answer in time."""


class Unavailable(TribunalError):
    """503: the store or the judges are unavailable (retry later)."""


class InternalError(TribunalError):
    """500: a server bug or stored data that no longer decodes."""


class IoError(TribunalError):
    """500: the server could not read or write a file."""


class UnexpectedResponse(TribunalError):
    """A failed response without tribunal's error body (a proxy's page, say)."""


_BY_KIND: Dict[str, Type[TribunalError]] = {
    "invalid_input": InvalidInput,
    "unauthenticated": Unauthenticated,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "conflict": Conflict,
    "too_large": TooLarge,
    "rate_limited": RateLimited,
    "timeout": Timeout,
    "unavailable": Unavailable,
    "internal": InternalError,
    "io": IoError,
}


def retry_after_seconds(response: httpx.Response) -> Optional[float]:
    """The `Retry-After` header in seconds (tribunal sends whole seconds), if readable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> TribunalError:
    """The typed exception for a failed response (its body must already be read)."""
    request_id = response.headers.get("x-request-id")
    try:
        detail = json.loads(response.content)["error"]
        kind = str(detail["kind"])
        message = str(detail["message"])
    except (ValueError, KeyError, TypeError):
        text = response.content.decode("utf-8", errors="replace")[:300]
        return UnexpectedResponse(
            f"HTTP {response.status_code} without an error body: {text}",
            kind="unexpected_response",
            status=response.status_code,
            request_id=request_id,
        )
    field = detail.get("field")
    request_id = detail.get("request_id") or request_id
    cls = _BY_KIND.get(kind, TribunalError)
    if cls is RateLimited:
        return RateLimited(
            message,
            retry_after=retry_after_seconds(response),
            kind=kind,
            status=response.status_code,
            field=field,
            request_id=request_id,
        )
    return cls(message, kind=kind, status=response.status_code, field=field, request_id=request_id)
