"""POST /o/token/ and /o/revoke_token/ with failed client authentications throttled per
client id and address.

Each wrong secret (or unknown id) counts against the client id it named and the address it
came from; once either has ORCH_TOKEN_FAILURE_LIMIT failures in a window of
ORCH_TOKEN_FAILURE_WINDOW_S, that id or address gets a 429 with Retry-After until the window
ends, before any secret is hashed. Guessing is slowed, and so is the CPU a flood of guesses
takes from every API call. A good client with its own id and address is not affected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from urllib.parse import unquote_plus

from django.conf import settings
from django.http import HttpResponse
from oauth2_provider import views as oauth2_views

from apps.accounts.throttling import rate_hit, rate_hits, seconds_to_next_window

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _client_id(request) -> str:
    """The client id a token request names: in its Basic credentials, else in its body."""
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            return unquote_plus(base64.b64decode(credentials).decode().split(":", 1)[0])
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return ""
    return request.POST.get("client_id", "")


def failure_keys(request) -> list[str]:
    # Hashed: an attacker's id can be any length, and it never needs to be read back.
    client = hashlib.sha256(_client_id(request).encode()).hexdigest()[:32]
    # The peer's address: gunicorn is reached directly. Behind a proxy every caller has the
    # proxy's address, and one guesser would hold them all back.
    address = request.META.get("REMOTE_ADDR", "")
    return [f"token-fail:client:{client}", f"token-fail:addr:{address}"]


def too_many_failures() -> HttpResponse:
    window = settings.TOKEN_FAILURE_WINDOW_S
    wait = seconds_to_next_window(window)
    body = {"error": "too_many_requests",
            "error_description": "Too many failed client authentications for this client id "
                                 f"or from this address; retry in {wait} s."}
    response = HttpResponse(json.dumps(body), status=429, content_type="application/json")
    response["Retry-After"] = str(wait)
    return response


def unsupported_grant() -> HttpResponse:
    body = {"error": "unsupported_grant_type",
            "error_description": "This server grants client_credentials only."}
    return HttpResponse(json.dumps(body), status=400, content_type="application/json")


class FailedClientAuthThrottle:
    """Refuses an id or address over its failures before any secret is hashed, and counts a
    401 (invalid_client: a wrong secret or an unknown id) against both."""

    def post(self, request, *args, **kwargs):
        keys = failure_keys(request)
        window = settings.TOKEN_FAILURE_WINDOW_S
        if rate_hits(keys, window) >= settings.TOKEN_FAILURE_LIMIT:
            return too_many_failures()
        # A mixin: the post it calls is the oauth2_provider view's it is mixed into.
        response = super().post(request, *args, **kwargs)  # type: ignore[misc]
        if response.status_code == 401:
            for key in keys:
                rate_hit(key, window)
        return response


class TokenView(FailedClientAuthThrottle, oauth2_views.TokenView):
    def post(self, request, *args, **kwargs):
        # The product's clients use client credentials. The device grant's branch would also
        # answer a missing device_code with a 500 (a KeyError in django-oauth-toolkit).
        if request.POST.get("grant_type") == DEVICE_CODE_GRANT:
            return unsupported_grant()
        return super().post(request, *args, **kwargs)


# Revocation checks the client's secret too: unthrottled, it would be a guessing oracle.
class RevokeTokenView(FailedClientAuthThrottle, oauth2_views.RevokeTokenView):
    pass
