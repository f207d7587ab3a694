"""The keys one worker holds: its pool's keys (to verify job specs, polls and cancels) and its
own worker key (to sign events and heartbeats), derived from the control plane's master keys
(``workers.signing``). Never a master key.

Where a worker gets them, first found wins:

- ``ORCH_WORKER_CREDENTIAL``: the text ``python manage.py worker_credential --pool P
  --worker NAME@HOST`` prints, for one pool and one worker identity; or
  ``ORCH_WORKER_CREDENTIAL_FILE``: a file holding that text;
- the master keys, when this worker can read them (the quick start on one machine:
  ``ORCH_SIGNING_KEYS`` or ``var/signing.key``): it derives its own keys from them once, and
  holds only those. A worker that starts before the control plane made the key file derives
  them once the file is there.

A credential is for one pool and one identity: a worker started with another ``--pool`` or
``--name`` refuses to start (``setup``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .contract import this_host
from .signing import SignatureError, master_keys, pool_key, worker_host, worker_key

# The credential's text starts with this: a version, so its form can change later.
PREFIX = "orchw1."
CREDENTIAL_ENV = "ORCH_WORKER_CREDENTIAL"
CREDENTIAL_FILE_ENV = "ORCH_WORKER_CREDENTIAL_FILE"
# A worker that starts again without its environment's secrets (``workers.__main__``) gets
# its credential through an inherited pipe, never through the environment.
CREDENTIAL_FD_ENV = "ORCH_WORKER_CREDENTIAL_FD"


class CredentialError(Exception):
    """A credential that cannot be read, or is for another pool or worker."""


@dataclass(frozen=True)
class Credential:
    pool: str
    worker: str  # NAME@HOST, the worker's Celery node name
    # Left out of repr(): a credential that reaches a log line or a traceback shows no key.
    pool_keys: tuple[bytes, ...] = field(repr=False)  # newest first; every one verifies
    worker_keys: tuple[bytes, ...] = field(repr=False)  # newest first; the first signs

    def to_text(self) -> str:
        data = {"pool": self.pool, "worker": self.worker,
                "keys": [{"pool": p.hex(), "worker": w.hex()}
                         for p, w in zip(self.pool_keys, self.worker_keys, strict=True)]}
        return PREFIX + base64.urlsafe_b64encode(json.dumps(data).encode()).decode()

    @classmethod
    def from_text(cls, text: str) -> Credential:
        text = text.strip()
        try:
            if not text.startswith(PREFIX):
                raise ValueError("it does not start with " + PREFIX)
            data = json.loads(base64.urlsafe_b64decode(text[len(PREFIX):].encode()))
            keys = [(bytes.fromhex(k["pool"]), bytes.fromhex(k["worker"]))
                    for k in data["keys"]]
            pool, worker = str(data["pool"]), str(data["worker"])
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise CredentialError(f"not a worker credential ({exc}); make one with python "
                                  "manage.py worker_credential --pool POOL --worker "
                                  "NAME@HOST") from None
        if not keys:
            raise CredentialError("a worker credential without keys")
        return cls(pool, worker, tuple(p for p, _ in keys), tuple(w for _, w in keys))


def derive(pool: str, worker: str, masters: list[bytes]) -> Credential:
    """The credential of ``worker`` (``NAME@HOST``) of ``pool``, from the master keys."""
    if not worker_host(worker):
        raise ValueError(f"a worker identity is NAME@HOST, not {worker!r}")
    return Credential(pool, worker, tuple(pool_key(m, pool) for m in masters),
                      tuple(worker_key(m, pool, worker) for m in masters))


def identity(name: str | None, pool: str) -> str:
    """A worker's identity: its Celery node name, ``<name, default the pool>@<host>``."""
    return f"{name or pool}@{this_host()}"


# --- the credential this worker holds ------------------------------------------------------------

_lock = threading.Lock()
_expected: tuple[str, str] | None = None  # (pool, identity), once setup() ran
_held: Credential | None = None


def setup(pool: str, worker: str) -> Credential | None:
    """At a worker's start: take its credential (or derive it from the master keys when they
    are readable) and keep it. Returns None when there is no key yet (the master key file is
    made later by the control plane: ``current`` derives it then). Raises CredentialError for
    a credential that cannot be read or is for another pool or worker."""
    global _expected, _held
    given = _given()
    if given is not None and (given.pool, given.worker) != (pool, worker):
        raise CredentialError(
            f"the worker credential is for worker {given.worker!r} of pool {given.pool!r}, "
            f"but this worker is {worker!r} of pool {pool!r} (its --pool, --name and host): "
            f"make its own with python manage.py worker_credential --pool {pool} "
            f"--worker {worker}")
    with _lock:
        _expected, _held = (pool, worker), given
    try:
        return current()
    except SignatureError:
        return None


def current() -> Credential:
    """The keys this worker holds. Raises SignatureError when it has none yet.

    Without ``setup`` (a test that calls a task directly) the keys are derived from the
    master keys afresh each time, for the pool of ``ORCH_POOL``."""
    global _held
    with _lock:
        if _held is not None:
            return _held
        expected = _expected
    if expected is None:
        if not (pool := os.environ.get("ORCH_POOL", "")):
            raise SignatureError("no key: this process serves no pool (ORCH_POOL)")
        return derive(pool, identity(None, pool), master_keys())
    derived = derive(*expected, master_keys())
    with _lock:
        _held = _held or derived
        return _held


def _given() -> Credential | None:
    """The credential handed to this worker (pipe, environment or file), read once."""
    if fd := os.environ.pop(CREDENTIAL_FD_ENV, ""):
        try:
            with os.fdopen(int(fd)) as pipe:
                return Credential.from_text(pipe.read())
        except (ValueError, OSError) as exc:
            raise CredentialError(f"{CREDENTIAL_FD_ENV}: no credential to read ({exc})") from None
    if text := os.environ.get(CREDENTIAL_ENV, "").strip():
        return Credential.from_text(text)
    if path := os.environ.get(CREDENTIAL_FILE_ENV, ""):
        try:
            return Credential.from_text(Path(path).expanduser().read_text())
        except OSError as exc:
            raise CredentialError(f"{CREDENTIAL_FILE_ENV}: cannot read {path}: "
                                  f"{exc.strerror}") from None
    return None
