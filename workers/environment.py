"""One settings source for every side: the environment, then a ``.env`` file.

The web server, the control consumer, the beat and the workers all call ``load_env()`` before
they read a setting, so a value in ``.env`` means the same everywhere. A variable already in
the environment wins over the file (a deployment's unit or container settings come first).

Which file: ``ORCH_ENV_FILE`` when set; else ``.env`` at the root of the checkout the code runs
from; else ``.env`` in the current directory (an installed worker).

The same file and the project's ``var/`` (keys, the embedded database and broker, logs) are
kept from the users local jobs run as: see ``make_var_private``.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
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


def var_dir() -> Path:
    return project_root() / "var"


# Entries of var/ left reachable by path (never listable): where the targets' work dirs live.
WORK_DIRS = "work"
# deploy/slurm24-cluster.sh's Slurm 24.11: its root file system and the commands other users
# run from it (the jobs' user runs var/slurm24/bin/sbatch; slurmrestd runs as its own user).
SLURM24_DIR = "slurm24"


def make_var_private(reachable: Iterable[Path] = ()) -> None:
    """Keep local jobs (another user) from the project's own files: ``var/`` becomes 0711 (its
    entries reached by path only, never listed), every entry of it private to its owner
    except ``var/work``, ``var/slurm24`` and any that holds a path of ``reachable`` (0711 too:
    the jobs' work dirs, and the 24.11 cluster's commands, are below), and the ``.env`` file
    0600. Files made later under a private entry stay
    out of reach whatever their mode. Entries this user may not change are left as they are.
    """
    var = var_dir()
    if not var.is_dir():
        return
    keep = {WORK_DIRS, SLURM24_DIR}
    for path in reachable:
        with contextlib.suppress(ValueError):
            keep.add(Path(path).absolute().relative_to(var).parts[0])
    _chmod(var, 0o711)
    for entry in var.iterdir():
        try:
            mode = entry.lstat().st_mode
        except FileNotFoundError:  # gone since the listing (SQLite's journal comes and goes)
            continue
        if stat.S_ISLNK(mode):
            continue
        _chmod(entry, 0o711 if entry.name in keep and stat.S_ISDIR(mode) else mode & 0o700)
    if env_file().is_file():
        _chmod(env_file(), env_file().stat().st_mode & 0o700)


def _chmod(path: Path, mode: int) -> None:
    with contextlib.suppress(PermissionError, FileNotFoundError):
        if stat.S_IMODE(path.lstat().st_mode) != mode:
            path.chmod(mode)
