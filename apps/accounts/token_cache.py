"""Bearer tokens already checked, kept a few seconds per web process so that a client's next
requests skip django-oauth-toolkit's lookup (its token query, oauthlib's request parsing):
about 40 % of a cheap request's CPU.

- Keyed by the SHA-256 of the token: the process holds no token in the clear.
- Only what django-oauth-toolkit accepted is kept (its rules unchanged), with the user it
  acts as, for TOKEN_CACHE_TTL_S seconds (5 s by default; 0 turns the cache off).
- Revocation: the process that deletes a token or makes a user inactive forgets at once
  (``forget_on_revocation``); the other web processes believe what they checked until it is
  TOKEN_CACHE_TTL_S old. That is the bound: a revoked token, or a client cut off, works at
  most TOKEN_CACHE_TTL_S after, on another process.
- An expired token fails at once: its expiry is checked on every use.
- A token bound to a resource (RFC 8707) is never kept: its audience depends on the request.
- Each request gets its own copies of the user and token (their permission caches are per
  request, as without the cache).
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
from typing import Any

from django.conf import settings

# The most tokens one process keeps; past it, expired entries go first, then all of them.
MAX_ENTRIES = 10_000

_clock = time.monotonic  # replaced in tests
_entries: dict[str, tuple[float, Any, Any]] = {}
_lock = threading.Lock()


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cached(token: str) -> tuple[Any, Any] | None:
    """(user, access token) of a token checked less than TOKEN_CACHE_TTL_S ago and not
    expired since; None when it must be checked again."""
    ttl = settings.TOKEN_CACHE_TTL_S
    if ttl <= 0:
        return None
    entry = _entries.get(_key(token))
    if entry is None:
        return None
    stored_at, user, access_token = entry
    if _clock() - stored_at >= ttl or access_token.is_expired():
        _entries.pop(_key(token), None)
        return None
    return copy.copy(user), copy.copy(access_token)


def remember(token: str, user, access_token) -> None:
    """Keep what django-oauth-toolkit accepted for ``token``."""
    ttl = settings.TOKEN_CACHE_TTL_S
    if ttl <= 0 or getattr(access_token, "resource", None):
        return
    now = _clock()
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            for key, (stored_at, _, _) in list(_entries.items()):
                if now - stored_at >= ttl:
                    del _entries[key]
            if len(_entries) >= MAX_ENTRIES:
                _entries.clear()
        _entries[_key(token)] = (now, copy.copy(user), copy.copy(access_token))


def forget_on_revocation(sender, instance, **kwargs) -> None:
    """A token deleted or a user saved inactive (``post_delete``, ``post_save``): this process
    forgets every token at once (revocations are rare; the next requests check again)."""
    if getattr(instance, "is_active", False) is True:
        return
    forget_all()


def forget_all() -> None:
    """Drop every entry (tests; a process that must believe nothing it checked before)."""
    with _lock:
        _entries.clear()
