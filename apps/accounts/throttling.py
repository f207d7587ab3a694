"""Throttles: requests per API client, and failed client authentications at /o/token/.

The counts live in the database (``RateCounter``), not in Django's cache: gunicorn runs
several workers and the default cache is per process, so each worker would count alone. One
counted request is one atomic upsert, in fixed windows (a window's count restarts at 1).
"""

from __future__ import annotations

import time

from django.db import connection
from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from apps.accounts.models import RateCounter


def _window(period_s: int, now: float) -> tuple[int, int]:
    """The start of the window ``now`` falls in, and the seconds left until it ends."""
    start = int(now // period_s) * period_s
    return start, max(1, start + period_s - int(now))


def rate_hit(key: str, period_s: int) -> int:
    """Count one hit of ``key`` in the current window; returns the window's hits so far."""
    start, _ = _window(period_s, time.time())
    table = connection.ops.quote_name(RateCounter._meta.db_table)
    # PostgreSQL and SQLite (>= 3.35) both take this upsert: one statement, no lost update.
    # Only the model's own table name, quoted, is formatted in; the values are parameters.
    sql = (f"INSERT INTO {table} (key, window_start, hits) VALUES (%s, %s, 1) "  # noqa: S608
           f"ON CONFLICT (key) DO UPDATE SET "
           f"hits = CASE WHEN {table}.window_start = excluded.window_start "
           f"THEN {table}.hits + 1 ELSE 1 END, window_start = excluded.window_start "
           f"RETURNING hits")
    with connection.cursor() as cursor:
        cursor.execute(sql, [key, start])
        return cursor.fetchone()[0]


def rate_hits(keys: list[str], period_s: int) -> int:
    """The most hits any of ``keys`` has in the current window (0 when none counted)."""
    start, _ = _window(period_s, time.time())
    counts = RateCounter.objects.filter(key__in=keys, window_start=start)
    return max(counts.values_list("hits", flat=True), default=0)


def seconds_to_next_window(period_s: int) -> int:
    return _window(period_s, time.time())[1]


def parse_rate(rate: str) -> tuple[int, int]:
    """(requests, seconds per window) of a rate in DRF's format ("120/min"), read by DRF's own
    parser, which uses nothing of the throttle it is a method of (hence no instance)."""
    limit, period_s = SimpleRateThrottle.parse_rate(None, rate)  # type: ignore[arg-type]
    if limit is None or period_s is None:  # DRF's answer to no rate at all
        raise ValueError(f"not a rate: {rate!r}")
    return limit, period_s


def client_key(request) -> str:
    """Who a request counts against: its OAuth2 application, else its signed-in user, else
    its address (GET /api/health/ needs no token)."""
    application_id = getattr(request.auth, "application_id", None)
    if application_id is not None:
        return f"app-{application_id}"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user-{user.pk}"
    return f"addr-{request.META.get('REMOTE_ADDR', '')}"


class ClientRateThrottle(BaseThrottle):
    """Requests per client and scope: ``read`` (GET, HEAD, OPTIONS) or ``write`` (the rest),
    at REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] (ORCH_THROTTLE_RATE_READ and _WRITE). Over
    the rate: 429 with Retry-After, the seconds until the window ends."""

    def allow_request(self, request, view) -> bool:
        scope = "read" if request.method in SAFE_METHODS else "write"
        # Read at each request, not at import: settings overridden in tests take effect.
        rate = (api_settings.DEFAULT_THROTTLE_RATES or {}).get(scope)
        if not rate:
            return True
        limit, period_s = parse_rate(str(rate))  # a str: the stubs type the rates as numbers
        hits = rate_hit(f"api:{scope}:{client_key(request)}", period_s)
        self.retry_after = seconds_to_next_window(period_s)
        return hits <= limit

    def wait(self) -> int:
        return self.retry_after
