"""Signed messages from the control plane to the workers: job specs, polls and cancels.

Only the control plane signs, and it signs only messages about processes it created, so a
job spec published to a pool's queue by anyone else (a hand-made spec, a process id that
exists nowhere) is refused by every worker and runs nothing.

A message on the wire is a plain JSON dict, an envelope::

    {"kind": "spec" | "poll" | "cancel", "pool": ..., "issued_at": <unix time>,
     "body": <the contract message as a dict>, "signature": <hex HMAC-SHA256>}

The signature covers the canonical JSON of everything but itself. A worker refuses an
envelope that is unsigned, signed with no key it holds, of another kind or pool than it
serves, or older than its kind's bound: a job spec may wait in its queue while its pool is
down, so it stays good for ``ORCH_SIGNATURE_MAX_AGE_S`` (default a day; cancels likewise);
a poll is asked again every few seconds, so it is stale after ``ORCH_POLL_SIGNATURE_MAX_AGE_S``
(default 5 minutes). A copy replayed within its bound does no harm: submission finds the job
it already started, polls and cancels are idempotent.

Both sides read the same keys, newest first (the newest signs, every one verifies, so a key
can be rotated: put the new one first everywhere, then drop the old one a bound later):

- ``ORCH_SIGNING_KEYS``: keys separated by commas, newest first; or
- ``ORCH_SIGNING_KEY_FILE``: a file holding one key, or several one per line, newest first
  (default ``var/signing.key`` of the project, created with mode 0600 the first time the
  control plane signs, so on one machine nothing needs setting). A worker never creates it.

``python -m orchestration_worker.signing`` prints a new key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from .environment import project_root

DEFAULT_KEY_FILE = "var/signing.key"
KINDS = ("spec", "poll", "cancel")
DEFAULT_MAX_AGE_S = 24 * 3600
DEFAULT_POLL_MAX_AGE_S = 300
# Clocks of the control plane and a worker host may disagree a little; no more than this.
CLOCK_SKEW_S = 60


class SignatureError(Exception):
    """A message that must not be acted on (the reason says why), or no key to check it."""


def _key_file() -> Path:
    # Relative to the project, not the cwd: the web process, the beat and the workers of one
    # checkout must all find the same file wherever they were started.
    return project_root() / os.environ.get("ORCH_SIGNING_KEY_FILE", DEFAULT_KEY_FILE)


def keys(create: bool = False) -> list[bytes]:
    """The signing keys, newest first. ``create`` makes the key file when there is none."""
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
                return keys()
            finally:
                draft.unlink()
        else:
            raise SignatureError(f"no signing key: set ORCH_SIGNING_KEYS or "
                                 f"ORCH_SIGNING_KEY_FILE ({path} does not exist)")
    if not found:
        raise SignatureError("no signing key in ORCH_SIGNING_KEYS / ORCH_SIGNING_KEY_FILE")
    return [k.encode() for k in found]


def _canonical(kind: str, pool: str, issued_at: float, body: Any) -> bytes:
    return json.dumps({"kind": kind, "pool": pool, "issued_at": issued_at, "body": body},
                      sort_keys=True, separators=(",", ":")).encode()


def _mac(key: bytes, payload: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def sign(kind: str, pool: str, body: dict, *, issued_at: float | None = None,
         key: bytes | None = None) -> dict:
    """The envelope of ``body`` for ``pool``, signed with the newest key (or ``key``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown message kind {kind!r}")
    issued_at = time.time() if issued_at is None else issued_at
    key = key or keys(create=True)[0]
    return {"kind": kind, "pool": pool, "issued_at": issued_at, "body": body,
            "signature": _mac(key, _canonical(kind, pool, issued_at, body))}


def max_age_s(kind: str) -> float:
    if kind == "poll":
        return float(os.environ.get("ORCH_POLL_SIGNATURE_MAX_AGE_S", DEFAULT_POLL_MAX_AGE_S))
    return float(os.environ.get("ORCH_SIGNATURE_MAX_AGE_S", DEFAULT_MAX_AGE_S))


def verify(envelope: Any, kind: str, pool: str, *, now: float | None = None) -> dict:
    """The body of ``envelope`` when it is a ``kind`` message for ``pool``, signed with one of
    the keys and fresh. Raises SignatureError naming the reason otherwise."""
    if not isinstance(envelope, dict) or "signature" not in envelope:
        raise SignatureError("unsigned")
    try:
        payload = _canonical(envelope["kind"], envelope["pool"], envelope["issued_at"],
                             envelope["body"])
        signature = str(envelope["signature"])
    except (KeyError, TypeError, ValueError):
        raise SignatureError("malformed envelope") from None
    # Every key is tried: a message signed just before a rotation still verifies.
    if not any(hmac.compare_digest(_mac(k, payload), signature) for k in keys()):
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


if __name__ == "__main__":
    print(secrets.token_urlsafe(32))
