"""The OpenAPI description of what every API call shares: how a client authenticates (the
OAuth2 client-credentials flow at /o/token/, which the schema lists with /o/revoke_token/ as
operations of their own) and the error answers.

drf-spectacular finds the extensions below by their base classes once this module is imported
(AccountsConfig.ready imports it)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.contrib.django_oauth_toolkit import DjangoOAuthToolkitScheme
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

TOKEN_URL = "/o/token/"  # noqa: S105 - the token endpoint's path, no secret in it
REVOKE_URL = "/o/revoke_token/"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ClientCredentialsScheme(DjangoOAuthToolkitScheme):
    """Bearer tokens of the client-credentials grant. The toolkit's own extension targets its
    OAuth2Authentication alone, not our subclass; the scope a call needs follows
    ReadWriteScope: ``read`` to read, ``write`` to change."""

    target_class = "apps.accounts.authentication.ClientCredentialsAuthentication"
    name = "oauth2"

    def get_security_requirement(self, auto_schema):
        return {self.name: ["read" if auto_schema.method in SAFE_METHODS else "write"]}

    def get_security_definition(self, auto_schema):
        return {
            "type": "oauth2",
            "description": "Send the token as `Authorization: Bearer <token>` (the header "
                           "only). Get one from POST /o/token/ with the client's id and secret.",
            "flows": {"clientCredentials": {
                "tokenUrl": TOKEN_URL,
                "scopes": settings.OAUTH2_PROVIDER["SCOPES"],
            }},
        }


class ErrorSerializer(serializers.Serializer):
    """Named for the schema only: its shape is ERROR_SCHEMA, written out by ErrorSchema."""


MESSAGES = {"type": "array", "items": {"type": "string"}}

# The one shape of every 4xx and 5xx answer (apps/accounts/errors.py writes it).
ERROR_SCHEMA = {
    "type": "object",
    "description": "An error. A validation error lists messages under each field it refuses, "
                   "in `fields` and again at the top level (unless the name is one of the "
                   "shape's own keys).",
    "required": ["status", "code", "detail"],
    "properties": {
        "status": {"type": "integer", "description": "The HTTP status, again."},
        "code": {"type": "string", "example": "invalid",
                 "description": "A stable code: `invalid`, `not_authenticated`, "
                                "`permission_denied`, `not_found`, `too_large`, "
                                "`throttled`, `server_error`..."},
        "detail": {"type": "string", "description": "What went wrong, in one line."},
        "fields": {"type": "object", "additionalProperties": MESSAGES,
                   "description": "Validation errors: messages by field name."},
        "error_id": {"type": "string",
                     "description": "5xx only: the id the server logged the error under."},
    },
    "additionalProperties": MESSAGES,
    "example": {
        "status": 400, "code": "invalid",
        "detail": "used_config.seconds: 'ten' is not of type 'integer'",
        "fields": {"used_config": ["used_config.seconds: 'ten' is not of type 'integer'"]},
        "used_config": ["used_config.seconds: 'ten' is not of type 'integer'"],
    },
}


class ErrorSchema(OpenApiSerializerExtension):
    target_class = ErrorSerializer

    def get_name(self, auto_schema, direction):
        return "Error"

    def map_serializer(self, auto_schema, direction):
        return ERROR_SCHEMA


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


# The answers any authenticated call may give, whatever it does.
AUTH_ERRORS = {
    401: error("No token, or a token that is unknown or expired."),
    403: error("The token lacks the scope this call needs (`read` or `write`), or the "
               "caller's role in the object's team is below the one the call needs (named)."),
    429: error("Too many requests from this client; `Retry-After` says when to come back."),
    500: error("An unexpected error; the answer's id is in the server log."),
}


def errors(*statuses: int) -> dict:
    """``responses`` entries for a call's own error statuses plus AUTH_ERRORS."""
    generic = {
        400: "Bad input: the body names each field it refuses.",
        404: "No such object, or not one of the caller's teams'.",
        413: "The request body is over the size limit.",
        422: "The same Idempotency-Key was sent with another request.",
    }
    responses = {**AUTH_ERRORS, **{status: error(generic[status]) for status in statuses}}
    return dict(sorted(responses.items()))


# --- the token endpoint: django-oauth-toolkit's view, not DRF's, so written out here ----------

OAUTH_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "example": "invalid_client",
                  "description": "An RFC 6749 error code."},
        "error_description": {"type": "string"},
    },
}

TOKEN_OPERATION: dict[str, Any] = {
    "operationId": "oauth_token_create",
    "summary": "A bearer token for an OAuth2 client (client-credentials grant)",
    "description": "Authenticate with the client's id and secret, as HTTP Basic (`curl -u "
                   "ID:SECRET`) or as `client_id` and `client_secret` in the form. The token "
                   "lasts `expires_in` seconds. Failed attempts are throttled per client id "
                   "and address.",
    "tags": ["oauth"],
    "security": [{"clientBasic": []}, {}],
    "requestBody": {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object",
            "required": ["grant_type"],
            "properties": {
                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                "scope": {"type": "string", "example": "read write",
                          "description": "`read`, `write` or both, space-separated "
                                         "(default: both)."},
                "client_id": {"type": "string"},
                "client_secret": {"type": "string"},
            },
        }}},
    },
    "responses": {
        "200": {"description": "A token.", "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["access_token", "token_type", "expires_in", "scope"],
            "properties": {
                "access_token": {"type": "string"},
                "token_type": {"type": "string", "example": "Bearer"},
                "expires_in": {"type": "integer"},
                "scope": {"type": "string", "example": "read write"},
            },
        }}}},
        "400": {"description": "A grant type or scope this server does not grant (an OAuth2 "
                               "error), or a body that cannot be read (the API's error).",
                "content": {"application/json": {"schema": {"oneOf": [
                    OAUTH_ERROR, {"$ref": "#/components/schemas/Error"}]}}}},
        **{str(status): {"description": text,
                         "content": {"application/json": {"schema": OAUTH_ERROR}}}
           for status, text in (
               (401, "An unknown client, or a wrong secret."),
               (429, "Too many failed attempts; `Retry-After` says when to try again."),
           )},
    },
}


REVOKE_OPERATION = {
    "operationId": "oauth_revoke_token_create",
    "summary": "Revoke a token (RFC 7009)",
    "description": "The client that holds the token revokes it, authenticated as for "
                   "/o/token/ (and throttled alike when that fails). An unknown token is "
                   "answered 200 too, as RFC 7009 asks.",
    "tags": ["oauth"],
    "security": TOKEN_OPERATION["security"],
    "requestBody": {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object",
            "required": ["token"],
            "properties": {
                "token": {"type": "string"},
                "token_type_hint": {"type": "string",
                                    "enum": ["access_token", "refresh_token"]},
                "client_id": {"type": "string"},
                "client_secret": {"type": "string"},
            },
        }}},
    },
    "responses": {
        "200": {"description": "Revoked, or no such token."},
        "400": TOKEN_OPERATION["responses"]["400"],
        "401": TOKEN_OPERATION["responses"]["401"],
        "429": TOKEN_OPERATION["responses"]["429"],
    },
}


def add_token_endpoint(result, generator, request, public):
    """A postprocessing hook: /o/token/ and /o/revoke_token/ (django-oauth-toolkit's views,
    not DRF's) in the schema, and the Basic scheme they use."""
    result.setdefault("paths", {})[TOKEN_URL] = {"post": TOKEN_OPERATION}
    result["paths"][REVOKE_URL] = {"post": REVOKE_OPERATION}
    schemes = result.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["clientBasic"] = {"type": "http", "scheme": "basic",
                              "description": "The OAuth2 client's id and secret."}
    return result
