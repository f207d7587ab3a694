"""Secret environment values: sealed by the control plane, opened only by the worker that
starts the job.

A process's secrets are stored sealed (Fernet: AES-128-CBC with an HMAC) in the database and
travel sealed in its job spec, so neither the database, the broker nor a logged message holds
them in clear. The worker opens them right before it starts the job and hands them to the job;
nothing else sees them. Both sides read the same keys, newest first (the newest seals, every
one of them opens, so a key can be rotated without losing what older keys sealed):

- ``ORCH_SECRETS_KEYS``: Fernet keys separated by commas, newest first; or
- ``ORCH_SECRETS_KEY``: one Fernet key (``python -m orchestration_worker.secrets`` prints a new
  one); or
- ``ORCH_SECRETS_KEY_FILE``: a file holding one key, or several one per line, newest first
  (default ``var/secrets.key``, created on first use, so the embedded set-up on one machine
  needs no setting).

Every value sealed or opened here is also remembered (a bounded set, in this process only) so
that :mod:`.log_masking` can mask it in any log line.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

DEFAULT_KEY_FILE = "var/secrets.key"


class SecretsError(Exception):
    """Secrets that cannot be sealed or opened here (no key, or not a key they were sealed
    with)."""


def _key_texts(create: bool) -> tuple[str, list[str]]:
    """(where the keys come from, the keys newest first)."""
    if keys := os.environ.get("ORCH_SECRETS_KEYS", "").strip():
        return "ORCH_SECRETS_KEYS", [k.strip() for k in keys.split(",") if k.strip()]
    if key := os.environ.get("ORCH_SECRETS_KEY", "").strip():
        return "ORCH_SECRETS_KEY", [key]
    path = Path(os.environ.get("ORCH_SECRETS_KEY_FILE", DEFAULT_KEY_FILE))
    if path.exists():
        return str(path), path.read_text().split()
    if not create:
        raise SecretsError(f"no secrets key: set ORCH_SECRETS_KEYS, ORCH_SECRETS_KEY or "
                           f"ORCH_SECRETS_KEY_FILE ({path} does not exist)")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return str(path), [key.decode()]


def _fernets(create: bool) -> list[Fernet]:
    """One Fernet per configured key, newest first. A malformed key is named by its place,
    never shown."""
    source, keys = _key_texts(create)
    if not keys:
        raise SecretsError(f"no secrets key in {source}")
    fernets = []
    for number, key in enumerate(keys, 1):
        try:
            fernets.append(Fernet(key.encode()))
        except ValueError:
            raise SecretsError(f"key {number} of {len(keys)} in {source} is not a Fernet key "
                               "(32 url-safe base64-encoded bytes)") from None
    return fernets


def key_count() -> int:
    """How many keys are configured. Raises SecretsError when none is, or one is malformed."""
    return len(_fernets(create=False))


def seal(values: dict[str, str]) -> str:
    """Sealed text of ``values`` with the newest key ("" for none)."""
    if not values:
        return ""
    remember(values.values())
    return _fernets(create=True)[0].encrypt(json.dumps(values).encode()).decode()


def unseal(sealed: str) -> dict[str, str]:
    """The values sealed in ``sealed``, opened with whichever configured key sealed them.
    Raises SecretsError without saying anything of them."""
    if not sealed:
        return {}
    try:
        values = json.loads(MultiFernet(_fernets(create=False)).decrypt(sealed.encode()))
    except (InvalidToken, ValueError):
        raise SecretsError("the job's secrets cannot be opened with this worker's keys "
                           "(none of ORCH_SECRETS_KEYS / ORCH_SECRETS_KEY is the key the "
                           "control plane sealed them with)") from None
    remember(values.values())
    return values


def reseal(sealed: str) -> str | None:
    """``sealed`` sealed again with the newest key, or None when the newest key already
    sealed it (so re-sealing twice changes nothing). Raises SecretsError when no configured
    key opens it."""
    if not sealed:
        return None
    fernets = _fernets(create=False)
    try:
        fernets[0].decrypt(sealed.encode())
        return None
    except InvalidToken:
        pass
    try:
        return MultiFernet(fernets).rotate(sealed.encode()).decode()
    except InvalidToken:
        raise SecretsError("sealed with a key that is not configured") from None


# --- the values this process has seen, for log masking -------------------------------------

# Shorter values would mask ordinary words in every log line and tell their length anyway.
MASK_MIN_CHARS = 4
# The most recent values kept: a long-lived web process or worker sees many runs' secrets.
REMEMBERED_MAX = 1024

_remembered: OrderedDict[str, None] = OrderedDict()
_remembered_lock = threading.Lock()


def remember(values) -> None:
    """Keep ``values`` (strings) among those log lines must never show."""
    with _remembered_lock:
        for value in values:
            if isinstance(value, str) and len(value) >= MASK_MIN_CHARS:
                _remembered[value] = None
                _remembered.move_to_end(value)
        while len(_remembered) > REMEMBERED_MAX:
            _remembered.popitem(last=False)


def remembered() -> tuple[str, ...]:
    """The secret values this process has sealed or opened lately, newest last."""
    with _remembered_lock:
        return tuple(_remembered)


if __name__ == "__main__":
    print(Fernet.generate_key().decode())
