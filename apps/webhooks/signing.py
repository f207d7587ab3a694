"""How a receiver knows a delivery is ours: ``X-Orch-Signature: t=<unix time>,v1=<hex>``,
where hex is HMAC-SHA256 of ``"<t>.<body>"`` under the hook's secret. A receiver recomputes
it over the raw body and refuses a stale ``t`` (replays)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "X-Orch-Signature"


def new_secret() -> str:
    return secrets.token_hex(32)


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def signature_valid(secret: str, body: bytes, header: str, now: float,
                    tolerance_s: float = 300) -> bool:
    """What a receiver does (and our tests): the header's MAC matches and it is recent."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    expected = signature(secret, body, timestamp)
    return hmac.compare_digest(expected, header) and abs(now - timestamp) <= tolerance_s
