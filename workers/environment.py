"""One settings source for every side: the environment, then a ``.env`` file.

The web server, the control consumer, the beat and the workers all call ``load_env()`` before
they read a setting, so a value in ``.env`` means the same everywhere. A variable already in
the environment wins over the file (a deployment's unit or container settings come first).

Which file: ``ORCH_ENV_FILE`` when set; else ``.env`` at the root of the checkout the code runs
from; else ``.env`` in the current directory (an installed worker).
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

_CHECKOUT = Path(__file__).resolve().parent.parent
_loaded: set[Path] = set()


def project_root() -> Path:
    """The checkout the code runs from, or the current directory for an installed worker.
    Relative paths in settings (the embedded broker's file, work dirs) are taken from here."""
    if (_CHECKOUT / "manage.py").is_file():
        return _CHECKOUT
    return Path.cwd()


def env_file() -> Path:
    named = os.environ.get("ORCH_ENV_FILE")
    if named:
        return Path(named).expanduser().absolute()
    return project_root() / ".env"


def load_env() -> Path | None:
    """Copy the settings of the ``.env`` file into ``os.environ`` where they are not set yet.
    Returns the file read, or None when there is none. Reading a file twice changes nothing."""
    path = env_file()
    if path in _loaded:
        return path
    if not path.is_file():
        return None
    for name, value in dotenv_values(path).items():
        if value is not None:
            os.environ.setdefault(name, value)
    _loaded.add(path)
    return path
