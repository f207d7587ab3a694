"""Answers given before or around a view: a body too big, a URL no database can hold, an error
no view caught. Every one is JSON of the one error shape (apps.accounts.errors)."""

from __future__ import annotations

from urllib.parse import unquote_plus

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.http import Http404
from django.http.multipartparser import MultiPartParserError
from django.urls import Resolver404, resolve

from apps.accounts.errors import json_error, server_error_logged

# Bytes of a refused body read and dropped so the client can read the 413: a client that is
# still sending when the connection closes never sees the answer. Past this, it is closed.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
DRAIN_CHUNK_BYTES = 64 * 1024


class BodySizeLimitMiddleware:
    """Refuse a request body over MAX_REQUEST_BODY_BYTES with a JSON 413, before anything
    parses it; a URL holding a NUL character (no database stores one) with a JSON 400.

    A view that takes big bodies says so itself: a view class with ``request_body_limit(method,
    actions)`` answering ``(limit, field, message)`` for a request (the dataset upload) has that
    limit instead, and a body over it is refused naming ``field`` with ``message``."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            size = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size = 0
        if size > settings.MAX_REQUEST_BODY_BYTES:
            limit, field, message = _body_limit(request)
            if size > limit:
                drain(request, size)
                return json_error(413, f"The request body is {size} bytes; {message}",
                                  fields={field: [f"The request body is {size} bytes; "
                                                  f"{message}"]})
        if "\0" in request.path or "\0" in unquote_plus(request.META.get("QUERY_STRING", "")):
            return json_error(400, "The URL must not contain a NUL character.",
                              fields={"url": ["must not contain a NUL character (%00)."]})
        return self.get_response(request)


def _body_limit(request) -> tuple[int, str, str]:
    """The most bytes the request's body may hold, the field a refusal names and its words:
    the view's own (``request_body_limit``), else MAX_REQUEST_BODY_BYTES."""
    limit = settings.MAX_REQUEST_BODY_BYTES
    default = (limit, "body", f"the limit is {limit} (MAX_REQUEST_BODY_BYTES).")
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return default
    view_class = getattr(match.func, "cls", None) or getattr(match.func, "view_class", None)
    own = getattr(view_class, "request_body_limit", None)
    found = own(request.method, getattr(match.func, "actions", None) or {}) if own else None
    return found or default


def drain(request, size: int) -> None:
    """Read and drop up to DRAIN_LIMIT_BYTES of the body, so the client reads the answer."""
    left = min(size, DRAIN_LIMIT_BYTES)
    try:
        while left > 0:
            chunk = request.read(min(DRAIN_CHUNK_BYTES, left))
            if not chunk:
                return
            left -= len(chunk)
    except OSError:  # the client gave up: nobody reads the answer anyway
        return


class JSONErrorMiddleware:
    """An exception a view did not handle becomes a JSON answer, whatever DEBUG says: never
    Django's debug page (it shows the request's headers, the bearer token among them)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (settings.DEBUG and response.status_code == 404
                and response.get("Content-Type", "").startswith("text/html")
                and not request.path.startswith("/admin/")):  # DEBUG's page of URL patterns
            return json_error(404, f"Nothing at {request.path}.")
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, Http404):
            return json_error(404, f"Nothing at {request.path}.")
        if isinstance(exception, PermissionDenied):
            return json_error(403, "You do not have permission to do this.")
        if isinstance(exception, RequestDataTooBig):
            return json_error(413, "The request body is too big.")
        # A multipart body without its boundary (read by a non-DRF view: the token endpoint)
        if isinstance(exception, BadRequest | SuspiciousOperation | MultiPartParserError):
            return json_error(400, "Bad request.")
        return server_error_logged(request)
