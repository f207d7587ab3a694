"""Django's SECRET_KEY when none is set: made once into a file, refused in production.

A set-up that serves only this machine (the embedded default, ``deploy/stack.sh`` on loopback,
the tests) gets a key generated on first start into ``var/secret-key`` (mode 0600), so sessions
and signed values survive restarts with nothing to configure. A set-up that serves other hosts
(ALLOWED_HOSTS names any host besides the loopback ones) is production: there a generated key
would differ from one web server to the next, so it must be given, and starting without one
is refused with a message naming SECRET_KEY.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1", "testserver"})


def serves_other_hosts(allowed_hosts: list[str]) -> bool:
    """True when ALLOWED_HOSTS lets any host but this machine's loopback names in."""
    return any(host.strip().lower() not in LOCAL_HOSTS for host in allowed_hosts)


def secret_key(given: str, allowed_hosts: list[str], key_file: Path) -> str:
    """``given`` when set; otherwise the key in ``key_file``, made there on first use."""
    if given:
        return given
    if serves_other_hosts(allowed_hosts):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set, and ALLOWED_HOSTS serves other hosts "
            f"({', '.join(allowed_hosts)}): set SECRET_KEY (a long random string, e.g. "
            "python -c \"import secrets; print(secrets.token_urlsafe(50))\") in the environment "
            "or .env, the same on every web server, the control consumer and the beat.")
    if key_file.exists():
        return key_file.read_text().strip()
    return _create(key_file)


def _create(key_file: Path) -> str:
    """Write a new key to ``key_file`` (0600). Processes starting together agree: the key is
    written whole to a private file first and linked into place, and a loser reads the winner's."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    staging = key_file.with_name(f".{key_file.name}.{os.getpid()}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(50))
    try:
        os.link(staging, key_file)
    except FileExistsError:
        pass
    finally:
        staging.unlink()
    return key_file.read_text().strip()
