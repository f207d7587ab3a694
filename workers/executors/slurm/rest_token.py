"""The pool's token for slurmrestd: a JWT for the one user its jobs run as, read from a file an
operator renews (cron) or from ``SLURM_JWT``, and checked before it is sent.

The worker mints nothing and holds no cluster key: the token is made where the key lives
(``scontrol token username=USER lifespan=N``).
"""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

from ..base import ExecutorError


class Token:
    """The pool's JWT, from ``path`` (read again whenever the file changes, so an operator's
    cron can renew it under a running worker) or, without a path, from ``SLURM_JWT``.

    Nothing is minted here and no key is held: the token is checked (a JWT, for a user other
    than root, not expired) and sent as it is. Thread-safe; one per file per process."""

    def __init__(self, path: str | None):
        self.path = path
        self.token = ""
        self.claims: dict[str, Any] = {}
        self.reads = 0  # how often the file was read: once per change
        self._seen: tuple | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"token_file {self.path}" if self.path else "SLURM_JWT in the worker's environment"

    def get(self) -> tuple[str, dict[str, Any]]:
        """The token and its claims, or an ExecutorError that names where it comes from."""
        with self._lock:
            if self.path:
                self._read_if_changed(self.path)
            else:
                self._take(os.environ.get("SLURM_JWT", ""))
            expires = self.claims.get("exp")
            if isinstance(expires, (int, float)) and expires <= time.time():
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expires))
                renew = f" > {self.path}" if self.path else ""
                raise ExecutorError(
                    f"the token in {self.where} expired at {when}: renew it (scontrol token "
                    f"username={self.claims.get('sun')} lifespan=N{renew})")
            return self.token, self.claims

    def _read_if_changed(self, path: str) -> None:
        try:
            seen = os.stat(path)
            if not stat.S_ISREG(seen.st_mode):
                raise ExecutorError(f"cannot read the token: {self.where}: not a file")
            if seen.st_mode & 0o004:
                raise ExecutorError(
                    f"{self.where} is readable by every user (mode "
                    f"{seen.st_mode & 0o777:04o}): whoever reads it can act as its user; "
                    "make it readable by the worker only (chmod 600)")
            key = (seen.st_ino, seen.st_mtime_ns, seen.st_size)
            if key == self._seen:
                return
            text = Path(path).read_text()
        except OSError as exc:
            raise ExecutorError(f"cannot read the token: {self.where}: "
                                f"{exc.strerror or exc}") from None
        self._take(text)
        self._seen = key
        self.reads += 1

    def _take(self, text: str) -> None:
        token = text.strip().removeprefix("SLURM_JWT=").strip()
        if not token:
            raise ExecutorError(f"no token in {self.where}: give the worker one for its pool's "
                                "user (scontrol token username=USER lifespan=N)")
        if token == self.token:
            return
        try:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            raise ExecutorError(f"{self.where} holds no JWT (what scontrol token prints)") from None
        if not isinstance(claims, dict) or not isinstance(claims.get("sun"), str):
            raise ExecutorError(f"the token in {self.where} names no user (claim sun)")
        if claims["sun"] == "root":
            raise ExecutorError(f"the token in {self.where} is root's: Slurm jobs never run as "
                                "root; give the pool a token for its own user", permanent=True)
        self.token, self.claims = token, claims


_TOKENS: dict[str | None, Token] = {}
_TOKENS_LOCK = threading.Lock()


def token_for(path: str | None) -> Token:
    """The one Token of this process for ``path`` (a worker makes an executor per message;
    they all share one read of the file)."""
    with _TOKENS_LOCK:
        if path not in _TOKENS:
            _TOKENS[path] = Token(path)
        return _TOKENS[path]
