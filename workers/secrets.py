"""Secret environment values: sealed by the control plane, opened only by the worker that
starts the job.

A process's secrets are stored sealed (Fernet: AES-128-CBC with an HMAC) in the database and
travel sealed in its job spec, so neither the database, the broker nor a logged message holds
them in clear. The worker opens them right before it starts the job and hands them to the job's
environment; nothing else sees them. Both sides read the same key:

- ``ORCH_SECRETS_KEY``: a Fernet key (``python -m orchestration_worker.secrets`` prints a new
  one), or
- ``ORCH_SECRETS_KEY_FILE``: a file holding one (default ``var/secrets.key``, created on first
  use, so the embedded set-up on one machine needs no setting).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

DEFAULT_KEY_FILE = "var/secrets.key"


class SecretsError(Exception):
    """Secrets that cannot be sealed or opened here (no key, or not the key they were sealed
    with)."""


def _key(create: bool) -> bytes:
    if key := os.environ.get("ORCH_SECRETS_KEY"):
        return key.encode()
    path = Path(os.environ.get("ORCH_SECRETS_KEY_FILE", DEFAULT_KEY_FILE))
    if path.exists():
        return path.read_bytes().strip()
    if not create:
        raise SecretsError(f"no secrets key: set ORCH_SECRETS_KEY or ORCH_SECRETS_KEY_FILE "
                           f"({path} does not exist)")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


def seal(values: dict[str, str]) -> str:
    """Sealed text of ``values`` ("" for none)."""
    if not values:
        return ""
    return Fernet(_key(create=True)).encrypt(json.dumps(values).encode()).decode()


def unseal(sealed: str) -> dict[str, str]:
    """The values sealed in ``sealed``. Raises SecretsError without saying anything of them."""
    if not sealed:
        return {}
    try:
        return json.loads(Fernet(_key(create=False)).decrypt(sealed.encode()))
    except (InvalidToken, ValueError):
        raise SecretsError("the job's secrets cannot be opened with this worker's key "
                           "(ORCH_SECRETS_KEY differs from the control plane's)") from None


if __name__ == "__main__":
    print(Fernet.generate_key().decode())
