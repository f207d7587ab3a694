"""Run dirs on a worker's file system, as the local, Docker and Slurm targets keep them.

Each target keeps one dir per process under its work root: the worker's files (the job's
config, its exit code, its log) and marker files that outlive ``release()`` so a late duplicate
job spec still sees the run. A job may run as another user and own files in its run dir, so
the worker writes by rename (a link planted at the name is replaced, never written through)
and reads without following links.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from ..contract import job_name
from .base import ExecutorError

log = logging.getLogger(__name__)

# The most a small file of a run dir (an id, an exit code) is read for.
SMALL_FILE_BYTES = 4096


def default_work_root() -> Path:
    """``ORCH_WORK_ROOT``, or ``var/work`` of the directory the worker runs in."""
    return Path(os.environ.get("ORCH_WORK_ROOT", "var/work")).absolute()


def run_key(process_id: str, attempt: int = 1) -> str:
    """The name of an attempt's run dir: the process id for the first attempt (as before
    attempts existed), ``<id>-a<N>`` for attempt N. A retry starts in a run dir of its own:
    the earlier attempt's markers and files are not its."""
    return job_name(process_id, attempt).removeprefix("orch-")


def run_dir_of(work_root: Path, process_id: str) -> Path:
    """The run dir of ``process_id`` under ``work_root``. Handles and ids come back from the
    control plane: a name that would leave the work root or hide in it is refused."""
    if not process_id or "/" in process_id or process_id.startswith("."):
        raise ExecutorError(f"not a process id: {process_id!r}", permanent=True)
    return work_root / process_id


def keep_work_dir(settings: dict[str, Any]) -> bool:
    """The pool setting ``keep_work_dir``: true keeps a finished run's files for debugging.
    Pool files give a boolean; an environment-style "1", "true" or "yes" means the same."""
    value = settings.get("keep_work_dir")
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` whole: readers see the old text or the new, never a part. The draft
    has a fresh, unguessable name of its own (two deliveries of one job spec may write the
    same file at once), and the rename replaces a link planted at ``path`` instead of
    writing through it. ``mode``: the worker's alone unless said otherwise (a file a
    container bind-mounts must be readable by the container's user)."""
    fd, draft = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(draft, path)
    except BaseException:
        Path(draft).unlink(missing_ok=True)
        raise


def open_job_file(path: Path) -> int | None:
    """A descriptor of the regular file ``path``, or None when there is none. A link (which
    could point the worker at its own keys) or a fifo (which would hang it) counts as none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        log.warning("%s is a link, not the job's file: ignored", path)
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        log.warning("%s is not a regular file: ignored", path)
        return None
    return fd


def read_from(path: Path, offset: int, limit: int) -> bytes:
    """Up to ``limit`` bytes of the file ``path`` from byte ``offset`` (a log shipped in
    pieces); nothing when there is no such regular file."""
    fd = open_job_file(path)
    if fd is None:
        return b""
    with os.fdopen(fd, "rb") as out:
        out.seek(offset)
        return out.read(limit)


def read_small(path: Path) -> str | None:
    """The text of a small file of a run dir (an id, a code), stripped; None when there is
    no such regular file or it is not text."""
    fd = open_job_file(path)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as out:
        try:
            return out.read(SMALL_FILE_BYTES).decode().strip()
        except UnicodeDecodeError:
            return None


def clean_run_dir(run_dir: Path, keep: set[str]) -> None:
    """Remove what a finished run left in ``run_dir`` but the files named in ``keep`` (the
    markers). A link is removed, never followed."""
    if not run_dir.is_dir():
        return
    for path in run_dir.iterdir():
        if path.name in keep:
            continue
        if path.is_dir() and not path.is_symlink():
            _make_writable(path)  # a read-only dir of the worker's (staged inputs)
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _make_writable(directory: Path) -> None:
    """Let this worker remove the entries of its own ``directory``, never through a link."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
