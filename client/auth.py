"""The OAuth2 client-credentials token: asked from ``POST /o/token/`` and renewed before it
expires, so a long ``logs -f`` or ``run --wait`` never meets a 401 for an old token."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote_plus

import requests

from .errors import ApiError, Refused, Unreachable, error_for

# Renew this long before expiry (or a tenth of the token's life, if shorter): a request sent
# just before the token expires must not reach the server just after.
RENEW_MARGIN_S = 60.0


@dataclass(frozen=True)
class Token:
    access_token: str
    expires_at: float  # Unix time
    issued_at: float
    scope: str = ""

    def due(self, now: float | None = None) -> bool:
        """Whether to ask for a new one now."""
        now = time.time() if now is None else now
        margin = min(RENEW_MARGIN_S, (self.expires_at - self.issued_at) / 10)
        return now >= self.expires_at - margin

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Token | None:
        """The token kept in a file, or None when the file's entry is not one."""
        try:
            return cls(str(data["access_token"]), float(data["expires_at"]),
                       float(data["issued_at"]), str(data.get("scope", "")))
        except (KeyError, TypeError, ValueError):
            return None


def fetch_token(session: requests.Session, url: str, client_id: str, secret: str, *,
                timeout: float, scope: str | None = None) -> Token:
    """A new token for the client ``client_id``: Refused on a wrong id or secret."""
    # RFC 6749 2.3.1: id and secret are form-encoded before the Basic encoding.
    auth = (quote_plus(client_id), quote_plus(secret))
    data = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    issued = time.time()
    try:
        answer = session.post(f"{url}/o/token/", data=data, auth=auth, timeout=timeout)
    except requests.RequestException as exc:
        raise Unreachable(f"cannot reach {url}: {unreachable_reason(exc)}") from exc
    body = json_of(answer)
    if answer.status_code == 401:
        raise Refused(f"{url} refused the client id or secret "
                      f"({(body or {}).get('error', 'invalid_client')})",
                      status=401, code="invalid_client", body=body)
    if answer.status_code >= 400 and not isinstance(body, dict):  # a proxy's page, another site
        raise error_for(answer.status_code, {"detail": f"{url}/o/token/ answered HTTP "
                                             f"{answer.status_code}, not this service's JSON: is "
                                             f"{url} the orchestration server's URL?"})
    if answer.status_code >= 400:
        raise error_for(answer.status_code, body, retry_after=answer.headers.get("Retry-After"))
    if not isinstance(body, dict) or "access_token" not in body:
        raise ApiError(f"{url}/o/token/ answered no token: is {url} this service's URL?",
                       status=answer.status_code)
    lifetime = float(body.get("expires_in") or 3600)
    return Token(body["access_token"], issued + lifetime, issued, body.get("scope", ""))


def json_of(answer: requests.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


def unreachable_reason(exc: requests.RequestException) -> str:
    """One line for a connection error: requests' own messages nest several repr()s."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        for known in ("Connection refused", "Name or service not known", "No route to host",
                      "Temporary failure in name resolution", "Connection reset",
                      "Remote end closed connection", "Network is unreachable"):
            if known in text:
                return known.lower()
        return "connection failed"
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema
                  | requests.exceptions.InvalidSchema):
        return "not a valid http(s) URL"
    return type(exc).__name__
