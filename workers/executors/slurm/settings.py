"""How the Slurm targets read a pool setting: the pool file's value, else an environment
variable (a submission node's worker is often configured by its systemd unit), else a default.
An empty value counts as unset at each step."""

from __future__ import annotations

import os
from typing import Any


def setting(settings: dict, key: str, env: str | None = None, default: Any = None) -> Any:
    """A pool setting, else the environment variable ``env``, else ``default``."""
    value = settings.get(key)
    if value in (None, ""):
        value = os.environ.get(env, "") if env else ""
    return value if value not in (None, "") else default
