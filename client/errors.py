"""What can go wrong talking to the API, as exceptions a program can catch by kind.

Every error of the server has one JSON shape (``status``, ``code``, ``detail``, ``fields``);
:func:`error_for` turns an answer into the exception of its kind, with that shape's parts as
attributes. Each kind carries the exit code the ``orch`` command ends with."""

from __future__ import annotations

from typing import Any

# The exit codes of `orch` (docs/cli.md lists them): 0 is success, 1 a run that ended without
# succeeding, 2 a usage error (typer's own, and an ambiguous id prefix).
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4
EXIT_UNREACHABLE = 5
EXIT_INVALID = 6
EXIT_TIMEOUT = 7
EXIT_SERVER = 8


class ApiError(Exception):
    """The server answered an error, or could not be asked. ``status`` is the HTTP status
    (None when no answer came), ``code`` the server's stable code (``invalid``,
    ``not_found``, ...), ``detail`` its one-line message, ``fields`` the messages by field."""

    exit_code = EXIT_SERVER

    def __init__(self, detail: str, *, status: int | None = None, code: str | None = None,
                 fields: dict[str, list[str]] | None = None, body: Any = None):
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code
        self.fields = fields or {}
        self.body = body

    def __str__(self) -> str:
        return self.detail


class BadRequest(ApiError):
    """The server refused what was sent (400, 409, 413, 422): ``fields`` names what."""

    exit_code = EXIT_INVALID


class Refused(ApiError):
    """401 (no token, a bad token, a wrong client id or secret) or 403 (a scope or role too
    low)."""

    exit_code = EXIT_REFUSED


class NotFound(ApiError):
    """404: nothing of that id, or nothing the client may see (the server does not say which)."""

    exit_code = EXIT_NOT_FOUND


class NoSuchRoute(NotFound):
    """The server has no such route at all: an older server than this client."""


class Throttled(ApiError):
    """429: too many requests; ``retry_after`` is the seconds the server asks to wait."""

    exit_code = EXIT_INVALID

    def __init__(self, detail: str, *, retry_after: float | None = None, **kwargs: Any):
        super().__init__(detail, **kwargs)
        self.retry_after = retry_after


class ServerError(ApiError):
    """A 5xx: a bug or a part of the server that is down (``error_id`` is in its log)."""

    exit_code = EXIT_SERVER


class Unavailable(ServerError):
    """502, 503 or 504: the server (or the proxy before it) is restarting or overloaded; a
    retry may succeed."""

    exit_code = EXIT_UNREACHABLE


class Unreachable(ApiError):
    """No answer: a wrong URL, a refused connection, a time-out, a broken TLS handshake."""

    exit_code = EXIT_UNREACHABLE


class AmbiguousPrefix(ApiError):
    """An id prefix that starts more than one process id: ``matches`` lists some of them."""

    exit_code = EXIT_USAGE

    def __init__(self, prefix: str, matches: list[str]):
        shown = ", ".join(matches)
        super().__init__(f"ambiguous id prefix {prefix!r}: it starts {shown}, and maybe more; "
                         "give more of the id")
        self.prefix = prefix
        self.matches = matches


class WaitTimeout(ApiError):
    """A wait ran out of time before the process ended; ``process`` is what it last saw."""

    exit_code = EXIT_TIMEOUT

    def __init__(self, detail: str, process: dict[str, Any] | None = None):
        super().__init__(detail)
        self.process = process


_KINDS: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Refused, 403: Refused, 404: NotFound, 409: BadRequest,
    413: BadRequest, 422: BadRequest, 429: Throttled,
    502: Unavailable, 503: Unavailable, 504: Unavailable,
}


def error_for(status: int, body: Any, *, retry_after: str | None = None) -> ApiError:
    """The exception for an error answer of ``status`` whose JSON is ``body`` (or None when it
    was not JSON, e.g. a proxy's HTML page)."""
    shape = body if isinstance(body, dict) else {}
    detail = _detail(status, shape)
    kind = _KINDS.get(status, ServerError if status >= 500 else ApiError)
    fields = shape.get("fields") if isinstance(shape.get("fields"), dict) else None
    kwargs: dict[str, Any] = {"status": status, "code": shape.get("code"), "fields": fields,
                              "body": body}
    # This server's own 404 for a path it does not route (apps/accounts/errors.not_found).
    if status == 404 and detail.startswith("Nothing at "):
        kind = NoSuchRoute
    if kind is Throttled:
        return Throttled(detail, retry_after=_seconds(retry_after), **kwargs)
    return kind(detail, **kwargs)


def _detail(status: int, shape: dict[str, Any]) -> str:
    """One line: the server's detail, or OAuth2's ``error``/``error_description``."""
    detail = shape.get("detail") or shape.get("error_description") or shape.get("error")
    if not detail:
        return f"the server answered HTTP {status}"
    return " ".join(str(detail).split())


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
