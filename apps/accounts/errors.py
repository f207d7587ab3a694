"""API errors: every refusal is JSON that names the field, never an HTML page or a 500."""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.processes.services import IdempotencyKeyReused


def exception_handler(exc, context):
    if isinstance(exc, IdempotencyKeyReused):
        return Response({"Idempotency-Key": [str(exc)]},
                        status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, exceptions.ParseError):
        exc = exceptions.ValidationError({"body": [f"Not valid JSON: {exc.detail}"]})
    return drf_exception_handler(exc, context)
