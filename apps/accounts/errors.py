"""API errors: every refusal is JSON of one shape that names the field, never an HTML page.

The shape, for every 4xx and 5xx (DRF views, plain Django views, middleware)::

    {"status": 400, "code": "invalid", "detail": "used_config: ...",
     "fields": {"used_config": ["used_config.seconds: ..."]},   # validation errors only
     "used_config": ["used_config.seconds: ..."],                # the same, at the top level
     "error_id": "5f0c..."}                                      # 5xx only: also in the log

Field messages are also kept at the top level (as this API always answered them) unless a
field's name is one of the shape's own keys; ``fields`` always holds them all.
"""

from __future__ import annotations

import logging
import sys
import uuid

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from apps.processes.services import IdempotencyKeyReused

log = logging.getLogger("orchestration.errors")

SHAPE_KEYS = frozenset({"status", "code", "detail", "fields", "error_id"})
CODES = {
    400: "invalid", 401: "not_authenticated", 403: "permission_denied", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 413: "too_large",
    415: "unsupported_media_type", 422: "unprocessable", 429: "throttled", 500: "server_error",
}
SERVER_ERROR = "An unexpected error; it is logged with this error_id."


def error_body(status_code: int, detail: str, *, code: str | None = None,
               fields: dict | None = None, error_id: str | None = None) -> dict:
    """The one error shape (see the module's docstring)."""
    body = {"status": status_code, "code": code or CODES.get(status_code, "error"),
            "detail": detail}
    if fields:
        body["fields"] = fields
        body.update({name: value for name, value in fields.items() if name not in SHAPE_KEYS})
    if error_id:
        body["error_id"] = error_id
    return body


def json_error(status_code: int, detail: str, **kwargs) -> JsonResponse:
    return JsonResponse(error_body(status_code, detail, **kwargs), status=status_code)


def log_unexpected(request, exc_info=None) -> str:
    """Log the error being handled with a new error id (the traceback stays in the log, never
    in the answer) and return the id."""
    error_id = uuid.uuid4().hex
    log.error("error_id=%s: unexpected error on %s %s", error_id,
              getattr(request, "method", "?"), getattr(request, "path", "?"),
              exc_info=exc_info or sys.exc_info())
    return error_id


def server_error_logged(request, exc_info=None) -> JsonResponse:
    return json_error(500, SERVER_ERROR, error_id=log_unexpected(request, exc_info))


def _summary(fields: dict) -> str:
    """One line naming every refused field, with its first message."""
    parts = []
    for name, messages in fields.items():
        first = messages[0] if isinstance(messages, list) and messages else messages
        text = str(first)
        parts.append(text if text.startswith(str(name)) else f"{name}: {text}")
    return "; ".join(parts)


def exception_handler(exc, context):
    if isinstance(exc, IdempotencyKeyReused):
        fields = {"Idempotency-Key": [str(exc)]}
        return Response(error_body(422, _summary(fields), code="idempotency_key_reused",
                                   fields=fields),
                        status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, exceptions.ParseError) and not isinstance(exc.detail, dict):
        exc = exceptions.ValidationError({"body": [f"Not valid JSON: {exc.detail}"]})
    elif isinstance(exc, exceptions.ParseError):  # a parser that knows the field (too deep)
        exc = exceptions.ValidationError(exc.detail)
    response = drf_exception_handler(exc, context)
    if response is None:  # not an API exception: a bug or a part that is down
        set_rollback()
        error_id = log_unexpected(context.get("request"), (type(exc), exc, exc.__traceback__))
        return Response(error_body(500, SERVER_ERROR, error_id=error_id), status=500)
    response.data = _shaped(response.status_code, response.data, exc)
    return response


def _shaped(status_code: int, data, exc) -> dict:
    if isinstance(exc, exceptions.ValidationError):
        fields = data if isinstance(data, dict) else {"non_field_errors": data}
        return error_body(status_code, _summary(fields), fields=fields)
    detail = data.get("detail", "") if isinstance(data, dict) else data
    code = getattr(detail, "code", None)
    return error_body(status_code, str(detail), code=code)


# --- Django's own error views (urls.py handler400/403/404/500): JSON outside the API too ------

def bad_request(request, exception=None):
    return json_error(400, "Bad request.")


def permission_denied(request, exception=None):
    return json_error(403, "You do not have permission to do this.")


def not_found(request, exception=None):
    return json_error(404, f"Nothing at {request.path}.")


def server_error(request):
    return server_error_logged(request)
