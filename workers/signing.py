"""Signed messages both ways: job specs, polls and cancels from the control plane to a pool,
events and heartbeats from a worker back to the control plane.

The control plane holds the **master keys**. No key is shared by two pools, nor by two
workers: from each master it derives, with HMAC-SHA256,

- a **pool key** (``pool_key``): it signs the job specs, polls and cancels for that pool, and
  the pool's workers verify them with it. A worker of another pool holds another key, so what
  one pool's worker could sign is never run by another pool;
- a **worker key** per worker identity ``NAME@HOST`` (its Celery node name; ``worker_key``):
  the worker signs its events and heartbeats with it, and the control plane, which derives the
  same key from the identity the message claims, believes the message came from that worker.

A worker holds only its own derived keys (``workers.credential``), never a master.

A message on the wire is a plain JSON dict, an envelope::

    {"kind": "spec" | "poll" | "cancel", "pool": ..., "issued_at": <unix time>,
     "body": <the contract message as a dict>, "signature": <hex HMAC-SHA256>}
    {"kind": "events" | "heartbeat", "pool": ..., "worker": "NAME@HOST",
     "issued_at": ..., "body": ..., "signature": ...}

The signature covers the canonical JSON of everything but itself. A worker refuses an
envelope that is unsigned, signed with no key it holds, of another kind or pool than it
serves, or older than its kind's bound: a job spec may wait in its queue while its pool is
down, so it stays good for ``ORCH_SIGNATURE_MAX_AGE_S`` (default a day; cancels likewise);
a poll is asked again every few seconds, so it is stale after ``ORCH_POLL_SIGNATURE_MAX_AGE_S``
(default 5 minutes). A copy replayed within its bound does no harm: submission finds the job
it already started, polls and cancels are idempotent. Events and heartbeats carry no age
bound: they may wait in ``control`` for as long as the control plane is down, and applying
one twice changes nothing (``apps.processes.events``).

The master keys, newest first (the newest signs, every one verifies, so a key can be rotated:
put the new one first, then drop the old one a bound later):

- ``ORCH_SIGNING_KEYS``: keys separated by commas, newest first; or
- ``ORCH_SIGNING_KEY_FILE``: a file holding one key, or several one per line, newest first
  (default ``var/signing.key`` of the project, created with mode 0600 the first time the
  control plane needs it, so on one machine nothing needs setting). A worker never creates it.

``python -m orchestration_worker.signing`` prints a new master key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .environment import project_root

DEFAULT_KEY_FILE = "var/signing.key"
# What the control plane sends to a pool, and what a worker sends back.
KINDS = ("spec", "poll", "cancel")
REPORT_KINDS = ("events", "heartbeat")
DEFAULT_MAX_AGE_S = 24 * 3600
DEFAULT_POLL_MAX_AGE_S = 300
# Clocks of the control plane and a worker host may disagree a little; no more than this.
CLOCK_SKEW_S = 60
# The labels that keep a pool key and a worker key apart, whatever the names.
POOL_LABEL = b"orchestration pool\0"
WORKER_LABEL = b"orchestration worker\0"


class SignatureError(Exception):
    """A message that must not be acted on (the reason says why), or no key to check it."""


def _key_file() -> Path:
    # Relative to the project, not the cwd: the web process, the beat and the workers of one
    # checkout must all find the same file wherever they were started.
    return project_root() / os.environ.get("ORCH_SIGNING_KEY_FILE", DEFAULT_KEY_FILE)


def master_keys(create: bool = False) -> list[bytes]:
    """The master keys, newest first. ``create`` makes the key file when there is none."""
    if text := os.environ.get("ORCH_SIGNING_KEYS", "").strip():
        found = [k.strip() for k in text.split(",") if k.strip()]
    else:
        path = _key_file()
        if path.exists():
            found = path.read_text().split()
        elif create:
            path.parent.mkdir(parents=True, exist_ok=True)
            found = [secrets.token_urlsafe(32)]
            # Written aside, then linked in place: a process that starts at the same moment
            # finds either no file or the whole key, never an empty one.
            draft = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(found[0] + "\n")
            try:
                os.link(draft, path)
            except FileExistsError:  # another process made it first: use its key
                return master_keys()
            finally:
                draft.unlink()
        else:
            raise SignatureError(f"no signing key: set ORCH_SIGNING_KEYS or "
                                 f"ORCH_SIGNING_KEY_FILE ({path} does not exist)")
    if not found:
        raise SignatureError("no signing key in ORCH_SIGNING_KEYS / ORCH_SIGNING_KEY_FILE")
    return [k.encode() for k in found]


# --- derived keys -----------------------------------------------------------------------------


def _names_ok(*names: str) -> bool:
    # A NUL would let two different (pool, worker) pairs derive one key.
    return all(isinstance(n, str) and n and "\0" not in n for n in names)


def pool_key(master: bytes, pool: str) -> bytes:
    """The key that signs what the control plane sends to ``pool``."""
    if not _names_ok(pool):
        raise ValueError(f"not a pool name: {pool!r}")
    return hmac.new(master, POOL_LABEL + pool.encode(), hashlib.sha256).digest()


def worker_key(master: bytes, pool: str, worker: str) -> bytes:
    """The key with which the worker ``NAME@HOST`` of ``pool`` signs what it sends."""
    if not _names_ok(pool, worker):
        raise ValueError(f"not a pool and worker: {pool!r}, {worker!r}")
    return hmac.new(master, WORKER_LABEL + pool.encode() + b"\0" + worker.encode(),
                    hashlib.sha256).digest()


def worker_host(worker: str) -> str:
    """The host of a worker identity ``NAME@HOST`` ("" when it has none)."""
    name, at, host = worker.rpartition("@")
    return host if name and at else ""


# --- envelopes ----------------------------------------------------------------------------------


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _mac(key: bytes, payload: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def sign(kind: str, pool: str, body: dict, *, issued_at: float | None = None,
         key: bytes | None = None) -> dict:
    """The envelope of ``body`` for ``pool``, signed with the pool's key derived from the
    newest master (or with ``key``). The control plane's side."""
    if kind not in KINDS:
        raise ValueError(f"unknown message kind {kind!r}")
    issued_at = time.time() if issued_at is None else issued_at
    key = key or pool_key(master_keys(create=True)[0], pool)
    fields = {"kind": kind, "pool": pool, "issued_at": issued_at, "body": body}
    return {**fields, "signature": _mac(key, _canonical(fields))}


def max_age_s(kind: str) -> float:
    if kind == "poll":
        return float(os.environ.get("ORCH_POLL_SIGNATURE_MAX_AGE_S", DEFAULT_POLL_MAX_AGE_S))
    return float(os.environ.get("ORCH_SIGNATURE_MAX_AGE_S", DEFAULT_MAX_AGE_S))


def verify(envelope: Any, kind: str, pool: str, *, now: float | None = None,
           keys: list[bytes] | None = None) -> dict:
    """The body of ``envelope`` when it is a ``kind`` message for ``pool``, signed with one of
    ``keys`` (a worker's pool keys; by default the pool keys of every master) and fresh.
    Raises SignatureError naming the reason otherwise."""
    if not isinstance(envelope, dict) or "signature" not in envelope:
        raise SignatureError("unsigned")
    try:
        payload = _canonical({"kind": envelope["kind"], "pool": envelope["pool"],
                              "issued_at": envelope["issued_at"], "body": envelope["body"]})
        signature = str(envelope["signature"])
    except (KeyError, TypeError, ValueError):
        raise SignatureError("malformed envelope") from None
    if keys is None:
        keys = [pool_key(master, pool) for master in master_keys()]
    # Every key is tried: a message signed just before a rotation still verifies.
    if not any(hmac.compare_digest(_mac(k, payload), signature) for k in keys):
        raise SignatureError("bad signature (not signed with any key of this worker)")
    # Checked only once the signature holds: what follows is the control plane's own word.
    if envelope["kind"] != kind:
        raise SignatureError(f"a {envelope['kind']} message where a {kind} was expected")
    body = envelope["body"]
    if envelope["pool"] != pool or not isinstance(body, dict) or body.get("pool") != pool:
        raise SignatureError(f"addressed to pool {envelope['pool']!r}, this worker serves "
                             f"{pool!r}")
    age = (time.time() if now is None else now) - float(envelope["issued_at"])
    if age > max_age_s(kind):
        raise SignatureError(f"stale: issued {age:.0f} s ago, the bound is {max_age_s(kind):.0f} s")
    if age < -CLOCK_SKEW_S:
        raise SignatureError(f"issued {-age:.0f} s in the future")
    return body


# --- what workers send back ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sender:
    """The worker a report verifiably came from: its pool and identity ``NAME@HOST``."""

    pool: str
    worker: str

    @property
    def host(self) -> str:
        return worker_host(self.worker)

    @property
    def source(self) -> str:
        """How a process's history names it."""
        return f"worker:{self.worker}"


def sign_report(kind: str, pool: str, worker: str, body: Any, *, key: bytes,
                issued_at: float | None = None) -> dict:
    """The envelope of a worker's report (``events``: a list of event dicts; ``heartbeat``),
    signed with that worker's key. The worker's side."""
    if kind not in REPORT_KINDS:
        raise ValueError(f"unknown report kind {kind!r}")
    issued_at = time.time() if issued_at is None else issued_at
    fields = {"kind": kind, "pool": pool, "worker": worker, "issued_at": issued_at,
              "body": body}
    return {**fields, "signature": _mac(key, _canonical(fields))}


def verify_report(envelope: Any, kind: str, *,
                  masters: list[bytes] | None = None) -> tuple[Sender, Any]:
    """Who sent ``envelope`` and its body, when it is a ``kind`` report signed with the key
    of the worker it names (derived from one of the master keys). The control plane's side.

    Raises SignatureError with one of a few fixed reasons (they are counted by reason):
    ``unsigned``, ``malformed envelope``, ``bad signature``, ``wrong kind``."""
    if not isinstance(envelope, dict) or "signature" not in envelope:
        raise SignatureError("unsigned")
    try:
        fields = {name: envelope[name] for name in ("kind", "pool", "worker", "issued_at",
                                                    "body")}
        payload = _canonical(fields)
        signature = str(envelope["signature"])
    except (KeyError, TypeError, ValueError):
        raise SignatureError("malformed envelope") from None
    pool, worker = fields["pool"], fields["worker"]
    if not _names_ok(pool, worker) or not worker_host(worker):
        raise SignatureError("malformed envelope")
    masters = master_keys() if masters is None else masters
    if not any(hmac.compare_digest(_mac(worker_key(m, pool, worker), payload), signature)
               for m in masters):
        raise SignatureError("bad signature")
    if fields["kind"] != kind:
        raise SignatureError("wrong kind")
    return Sender(pool=pool, worker=worker), fields["body"]


if __name__ == "__main__":
    print(secrets.token_urlsafe(32))
