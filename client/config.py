"""Where ``orch login`` keeps the server's URL, the client's id and secret and its last token:
``$XDG_CONFIG_HOME/orch/credentials.json`` (``~/.config/orch/`` without it), mode 0600 in a
0700 folder. ``ORCH_URL``, ``ORCH_CLIENT_ID`` and ``ORCH_CLIENT_SECRET`` override the file,
one by one."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .auth import Token
from .errors import Refused

ENV_URL, ENV_CLIENT_ID, ENV_SECRET = "ORCH_URL", "ORCH_CLIENT_ID", "ORCH_CLIENT_SECRET"


class NotLoggedIn(Refused):
    """No URL, client id or secret, neither in the file nor in the environment."""


@dataclass(frozen=True)
class Credentials:
    url: str
    client_id: str
    client_secret: str
    token: Token | None = None


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "orch"


def credentials_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / "credentials.json"


def normalized_url(url: str) -> str:
    """``url`` without trailing slashes, ``http://`` put before a bare host:port."""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


def load(env: Mapping[str, str] | None = None) -> Credentials:
    """The credentials in force: the environment's over the file's. The file's token is used
    only for the URL and client it was given to."""
    env = os.environ if env is None else env
    kept = _read(credentials_path(env))
    url = env.get(ENV_URL) or kept.get("url") or ""
    client_id = env.get(ENV_CLIENT_ID) or kept.get("client_id") or ""
    secret = env.get(ENV_SECRET) or kept.get("client_secret") or ""
    missing = [name for name, value in ((ENV_URL, url), (ENV_CLIENT_ID, client_id),
                                        (ENV_SECRET, secret)) if not value]
    if missing:
        raise NotLoggedIn(f"not logged in ({', '.join(missing)} not set): run `orch login`, "
                          "or set ORCH_URL, ORCH_CLIENT_ID and ORCH_CLIENT_SECRET")
    url = normalized_url(url)
    same_client = (normalized_url(kept.get("url") or "") == url
                   and kept.get("client_id") == client_id and kept.get("client_secret") == secret)
    token = Token.from_dict(kept.get("token") or {}) if same_client else None
    return Credentials(url, client_id, secret, token)


def save(credentials: Credentials, env: Mapping[str, str] | None = None) -> Path:
    """Write ``credentials`` (and their token) to the file, readable by its owner alone."""
    path = credentials_path(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body: dict[str, Any] = {"url": credentials.url, "client_id": credentials.client_id,
                            "client_secret": credentials.client_secret}
    if credentials.token is not None:
        body["token"] = credentials.token.as_dict()
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    # Created 0600 before a byte is written; renamed over the old file whole.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(body, out, indent=2)
    os.chmod(temporary, 0o600)  # O_CREAT's mode is cut by the umask, and an old file kept its
    os.replace(temporary, path)
    return path


def keep_token(token: Token, env: Mapping[str, str] | None = None) -> None:
    """Remember ``token`` in the file, when the file holds the client it was given to."""
    try:
        credentials = load(env)
    except NotLoggedIn:
        return
    kept = _read(credentials_path(env))
    if (normalized_url(kept.get("url") or "") == credentials.url
            and kept.get("client_id") == credentials.client_id
            and kept.get("client_secret") == credentials.client_secret):
        save(replace(credentials, token=token), env)


def _read(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}
