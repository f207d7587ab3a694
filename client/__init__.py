"""The Python client of the orchestration API, and the ``orch`` command built on it.

Installed as ``orchestration_client`` (``pip install '.[cli]'``); it needs requests, and the
command typer and rich, never Django. See docs/cli.md."""

from .api import TERMINAL_STATES, Client
from .auth import Token
from .config import NotLoggedIn
from .errors import (
    AmbiguousPrefix,
    ApiError,
    BadRequest,
    NoSuchRoute,
    NotFound,
    Refused,
    ServerError,
    Throttled,
    Unavailable,
    Unreachable,
    WaitTimeout,
)

__all__ = [
    "TERMINAL_STATES",
    "AmbiguousPrefix",
    "ApiError",
    "BadRequest",
    "Client",
    "NoSuchRoute",
    "NotFound",
    "NotLoggedIn",
    "Refused",
    "ServerError",
    "Throttled",
    "Token",
    "Unavailable",
    "Unreachable",
    "WaitTimeout",
]
