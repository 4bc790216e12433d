"""Python client for tribunal, the LLM-judge committee grading service.

`Client(url=..., api_key=...)` and `AsyncClient` cover the HTTP API; `models` holds
the request and response types generated from the server's /openapi.json; `errors`
the typed exceptions; `tribunal_client.scorer.tribunal_scorer` is the Inspect AI
scorer (install the `inspect` extra).
"""

from . import models
from ._client import DEFAULT_URL, AsyncClient, Client, FailedResult, ResultLine
from .errors import (
    Conflict,
    Forbidden,
    InternalError,
    InvalidInput,
    IoError,
    NotFound,
    RateLimited,
    Timeout,
    TooLarge,
    TribunalError,
    Unauthenticated,
    Unavailable,
    UnexpectedResponse,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "DEFAULT_URL",
    "FailedResult",
    "ResultLine",
    "models",
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
]
