"""Which receiver URLs are allowed: http(s) only, and (unless ORCH_WEBHOOK_ALLOW_PRIVATE) no
address of this machine or its private networks, so a callback cannot be used to reach the
services beside the control plane. A URL is checked as given when it is registered (no name
lookup on the request path) and again, with its name resolved, before each send (a name may
point elsewhere by then)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


class ReceiverRefused(ValueError):
    """A receiver URL we will not send to; the message says why."""


def receiver_check(url: str, *, resolve: bool = False) -> None:
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise ReceiverRefused("must be an http:// or https:// URL with a host")
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        raise _private(host, host)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:  # a name
        addresses = _resolved(host, parts.port) if resolve else []
    for address in addresses:
        if not address.is_global:
            raise _private(host, str(address))


def _resolved(host: str, port: int | None) -> list:
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise ReceiverRefused(f"host {host!r} does not resolve: {exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _private(host: str, address: str) -> ReceiverRefused:
    return ReceiverRefused(f"host {host!r} is a private or local address ({address}); "
                           "receivers must be public (ORCH_WEBHOOK_ALLOW_PRIVATE allows others)")
