"""Secret environment values: sealed by the control plane for one process of one pool, opened
only by a worker of that pool, for that process, right before it starts the job.

A process's secrets are stored sealed (Fernet: AES-128-CBC with an HMAC) in the database and
travel sealed in its job spec, so neither the database, the broker nor a logged message holds
them in clear.

**Keys.** The control plane holds the master keys, newest first (the newest seals, every one
of them opens, so a key can be rotated without losing what older keys sealed):

- ``ORCH_SECRETS_KEYS``: Fernet keys separated by commas, newest first; or
- ``ORCH_SECRETS_KEY``: one Fernet key (``python -m orchestration_worker.secrets`` prints a new
  one); or
- ``ORCH_SECRETS_KEY_FILE``: a file holding one key, or several one per line, newest first
  (default ``var/secrets.key``, created on first use, so the embedded set-up on one machine
  needs no setting).

Nothing is sealed with a master key itself: each pool has a key of its own per master,
derived with HKDF-SHA256 (the pool's name in its ``info``), and a value is sealed with its
pool's key of the newest master. So one pool's keys open nothing sealed for another pool, and
a worker needs only its own pool's keys: ``ORCH_POOL_SECRETS_KEYS`` (comma-separated, newest
first, as :func:`pool_keys_text` prints them). A worker also derives its pool's keys from any
master key it is given (one machine, one key file).

**Binding.** Fernet has no associated data, so the process id and the pool travel inside the
token, under its HMAC: ``{"process": id, "pool": pool, "values": {...}}``. Opening compares
them with the job spec the token came in (itself signed by the control plane): a sealed value
copied to another process, or another pool, is refused. Values sealed before they were bound
(a bare ``{name: value}`` under a master key) open nowhere until :func:`reseal` binds them to
the process whose row holds them (the data migration that shipped with it, and
``manage.py rotate_secrets``).

Every value sealed or opened here is also remembered (a bounded set, in this process only) so
that :mod:`.log_masking` can mask it in any log line.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

DEFAULT_KEY_FILE = "var/secrets.key"
POOL_KEYS_VAR = "ORCH_POOL_SECRETS_KEYS"
# What a pool's key is derived for: changing it changes every pool's keys.
POOL_KEY_INFO = b"orchestration secrets pool\0"
MASTER_SOURCES = "ORCH_SECRETS_KEYS, ORCH_SECRETS_KEY or ORCH_SECRETS_KEY_FILE"


class SecretsError(Exception):
    """Secrets that cannot be sealed or opened here (no key, not a key they were sealed with,
    or sealed for another process). Its message never holds a value."""


# --- keys --------------------------------------------------------------------------------------


def _master_texts(create: bool) -> tuple[str, list[str]]:
    """(where the master keys come from, the keys newest first); no keys when none is
    configured, unless ``create`` makes the key file."""
    if keys := os.environ.get("ORCH_SECRETS_KEYS", "").strip():
        return "ORCH_SECRETS_KEYS", _split(keys)
    if key := os.environ.get("ORCH_SECRETS_KEY", "").strip():
        return "ORCH_SECRETS_KEY", [key]
    path = Path(os.environ.get("ORCH_SECRETS_KEY_FILE", DEFAULT_KEY_FILE))
    if path.exists():
        return str(path), path.read_text().split()
    if not create:
        return f"ORCH_SECRETS_KEY_FILE ({path} does not exist)", []
    path.parent.mkdir(parents=True, exist_ok=True)
    new_key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(new_key)
    return str(path), [new_key.decode()]


def _split(text: str) -> list[str]:
    return [key.strip() for key in text.split(",") if key.strip()]


def _checked(keys: list[str], source: str) -> list[bytes]:
    """``keys`` as Fernet keys. A malformed key is named by its place, never shown."""
    checked = []
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key.encode())
        except ValueError:
            raise SecretsError(f"key {number} of {len(keys)} in {source} is not a Fernet key "
                               "(32 url-safe base64-encoded bytes)") from None
        checked.append(key.encode())
    return checked


def _masters(create: bool) -> list[bytes]:
    """The master keys, newest first. Raises SecretsError when none is configured."""
    source, keys = _master_texts(create)
    if not keys:
        raise SecretsError(f"no secrets key: set {MASTER_SOURCES} (found none in {source})")
    return _checked(keys, source)


def pool_key(master: bytes, pool: str) -> bytes:
    """The Fernet key of ``pool`` derived from one master key (HKDF-SHA256 over the master's
    32 bytes): whoever holds it opens that pool's secrets and no other pool's."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=POOL_KEY_INFO + pool.encode()).derive(base64.urlsafe_b64decode(master))
    return base64.urlsafe_b64encode(derived)


def pool_keys_text(pool: str) -> str:
    """``pool``'s keys, one per master key, newest first, comma-joined: the value of a
    worker's ``ORCH_POOL_SECRETS_KEYS``, so that it opens its pool's secrets without holding
    a master key. Raises SecretsError when no master key is configured."""
    return ",".join(pool_key(master, _pool_named(pool)).decode()
                    for master in _masters(create=False))


def _pool_named(pool: str) -> str:
    if not pool:
        raise SecretsError("secrets are sealed for one pool: no pool was named")
    return pool


def _opening_keys(pool: str) -> list[Fernet]:
    """The keys that may open ``pool``'s secrets here: the pool keys this worker was given,
    then those derived from the master keys it holds (either may be missing, not both)."""
    given = _checked(_split(os.environ.get(POOL_KEYS_VAR, "")), POOL_KEYS_VAR)
    source, masters = _master_texts(create=False)
    derived = [pool_key(master, pool) for master in _checked(masters, source)]
    if not given and not derived:
        raise SecretsError(f"no secrets key: set {POOL_KEYS_VAR} (a worker's keys for its "
                           f"pool) or {MASTER_SOURCES}")
    return [Fernet(key) for key in given + derived]


def key_count() -> int:
    """How many master keys are configured. Raises SecretsError when none is, or one is
    malformed."""
    return len(_masters(create=False))


# --- sealing and opening --------------------------------------------------------------------


def seal(values: dict[str, str], *, process_id, pool: str) -> str:
    """Sealed text of ``values`` for process ``process_id`` of ``pool``, with the pool's key of
    the newest master key ("" for no values)."""
    if not values:
        return ""
    remember(values.values())
    return _sealed(values, process_id, pool,
                   pool_key(_masters(create=True)[0], _pool_named(pool)))


def _sealed(values: dict[str, str], process_id, pool: str, key: bytes) -> str:
    payload = {"process": str(process_id), "pool": _pool_named(pool), "values": values}
    return Fernet(key).encrypt(json.dumps(payload).encode()).decode()


def unseal(sealed: str, *, process_id, pool: str) -> dict[str, str]:
    """The values sealed in ``sealed`` for process ``process_id`` of ``pool``, opened with
    whichever of the pool's keys sealed them. Raises SecretsError, without saying anything of
    them, when no key here opens them or they were sealed for another process or pool."""
    if not sealed:
        return {}
    payload = _opened(sealed, _opening_keys(_pool_named(pool)))
    if payload is None:
        raise SecretsError(_why_unopened(sealed, pool))
    values = _bound_values(payload, process_id, pool)
    remember(values.values())
    return values


def reseal(sealed: str, *, process_id, pool: str) -> str | None:
    """``sealed`` sealed again for process ``process_id`` of ``pool`` with the pool's key of
    the newest master key, or None when that key already sealed it so (re-sealing twice
    changes nothing). A value sealed before values were bound to their process is bound to
    this one. Raises SecretsError when no master key opens it, or it was sealed for another
    process or pool."""
    if not sealed:
        return None
    masters = _masters(create=False)
    keys = [Fernet(pool_key(master, _pool_named(pool))) for master in masters]
    if (payload := _opened(sealed, keys[:1])) is not None:
        _bound_values(payload, process_id, pool)
        return None
    if (payload := _opened(sealed, keys[1:])) is not None:
        _bound_values(payload, process_id, pool)
        return MultiFernet(keys).rotate(sealed.encode()).decode()
    if (values := _unbound_values(sealed, masters)) is not None:
        return _sealed(values, process_id, pool, pool_key(masters[0], pool))
    raise SecretsError("sealed with a key that is not configured")


def _opened(sealed: str, keys: list[Fernet]) -> Any:
    """What the first of ``keys`` that opens ``sealed`` finds in it, or None."""
    for key in keys:
        try:
            return json.loads(key.decrypt(sealed.encode()))
        except (InvalidToken, ValueError):
            continue
    return None


def _bound_values(payload: Any, process_id, pool: str) -> dict[str, str]:
    """The values of an opened ``payload``, once it names this process and pool."""
    if not (isinstance(payload, dict) and isinstance(payload.get("values"), dict)):
        raise SecretsError("the job's secrets are not sealed values bound to a process")
    if payload.get("process") != str(process_id) or payload.get("pool") != pool:
        raise SecretsError(f"the job's secrets were sealed for another process: refused for "
                           f"process {process_id} of pool {pool!r} (a sealed value opens only "
                           "for the process and pool it was sealed for)")
    return payload["values"]


def _unbound_values(sealed: str, masters: list[bytes]) -> dict[str, str] | None:
    """The values of a token sealed, unbound, with a master key itself (before values were
    bound to their process), or None when it is not one."""
    values = _opened(sealed, [Fernet(master) for master in masters])
    if isinstance(values, dict) and all(isinstance(v, str) for v in values.values()):
        return values
    return None


def _why_unopened(sealed: str, pool: str) -> str:
    """Why no key here opens ``sealed``, saying nothing of what it holds."""
    source, masters = _master_texts(create=False)
    try:
        unbound = bool(masters) and _unbound_values(sealed, _checked(masters, source)) is not None
    except SecretsError:  # a malformed master key: _opening_keys would have named it
        unbound = False
    if unbound:
        return ("the job's secrets were sealed before secrets were bound to their process: "
                "`manage.py migrate` (or `manage.py rotate_secrets`) on the control plane binds "
                "what is stored; run the process again")
    return (f"the job's secrets cannot be opened with this worker's keys for pool {pool!r}: "
            f"sealed for another pool, or with a key not configured here ({POOL_KEYS_VAR}, or "
            f"{MASTER_SOURCES} for the key the control plane sealed them with)")


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
