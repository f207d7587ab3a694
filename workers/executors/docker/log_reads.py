"""Which running containers' logs a poll reads: only those whose log grew since the last read.

The Docker API has no cheap "has this log grown" question: every read is a call. But the
engine keeps each container's log in a file (inspect's ``LogPath``; Podman's ``k8s-file`` and
Docker's ``json-file`` drivers) on the worker's host. Its path is kept in the run dir when the
container starts (``log_path``); a poll stats it and reads the logs only when its size differs
from the one the last full read saw. That size travels as the poll item's log cursor
(``logsize:<bytes>``), held by the control plane like any target's resume token: the worker
keeps no list. A poll of 1,000 quiet containers is one list call and 1,000 ``stat``\\ s.

Where the file cannot be reached (an engine on another host, a journald driver), the pool
setting ``log_reads_per_poll`` bounds the reads of running containers per poll, in turns
that go round them all (as the ECS target does); without it every one is read, as before.
A container that has ended is always read: its end is reported only with its last bytes.
"""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path
from typing import Any

from ...contract import PollItem

LOG_PATH_FILE = "log_path"  # in the run dir: where the engine keeps the container's log
CURSOR_PREFIX = "logsize:"

# Whose turn it is, per pool, when a poll reads a bounded number of logs (shared by every
# executor instance of a worker process: a worker makes one per message).
_TURNS: dict[str, itertools.count] = {}
_LOCK = threading.Lock()


def remember(run_dir: Path, attrs: dict[str, Any] | None) -> None:
    """Keep where the engine writes the container's log (inspect's attributes), if it says."""
    path = (attrs or {}).get("LogPath") or ""
    if path:
        (run_dir / LOG_PATH_FILE).write_text(path)


def log_size(run_dir: Path) -> int | None:
    """The size of the container's log file now; None when it is unknown or unreachable."""
    try:
        path = (run_dir / LOG_PATH_FILE).read_text().strip()
        return os.stat(path).st_size if path else None
    except OSError:
        return None


def cursor(size: int) -> str:
    return f"{CURSOR_PREFIX}{size}"


def unchanged(item: PollItem, size: int | None) -> bool:
    """True when the last full read of ``item``'s log saw the file at this ``size``."""
    return size is not None and item.log_cursor == cursor(size)


def turn(pool: str, handles: list[str], budget: int | None) -> set[str]:
    """The running containers (of those whose log size is unknown) this poll reads: all of
    them, or ``budget`` of them in turns that go round every one."""
    if budget is None or len(handles) <= budget:
        return set(handles)
    if budget <= 0:
        return set()
    with _LOCK:
        number = next(_TURNS.setdefault(pool, itertools.count()))
    groups = -(-len(handles) // budget)
    start = (number % groups) * budget
    return set(sorted(handles)[start:start + budget])
