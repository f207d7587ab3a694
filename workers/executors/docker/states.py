"""What a container's listing says of its job: the engine's container states grouped as ours,
the exit code, the message that explains a failure, and the time limit the poller enforces
(the engine does not)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ...contract import PollItem, State
from ..base import Status, time_limit_passed
from .container_spec import LABEL_MEMORY, LABEL_TIME_LIMIT

RUNNING = {"running", "paused", "restarting"}
CREATED = {"created", "configured", "initialized"}
EXITED = {"exited", "dead", "stopped"}

_EXIT_STATUS = re.compile(r"exited \((-?\d+)\)", re.IGNORECASE)
# What the container's init prints when it cannot exec the command (Podman's catatonit, tini).
_EXEC_FAILED = re.compile(r"failed to exec pid1: (.+)|exec (\S+) failed: (.+)")


def state_of(found: dict[str, Any]) -> str:
    """The engine's state of a listed container, lower case ("" when it gave none)."""
    return (found.get("State") or "").lower()


def listed_exit_code(found: dict[str, Any]) -> int | None:
    """The exit code a listing's status line gives ("Exited (3) 2 seconds ago"), or None."""
    match = _EXIT_STATUS.search(found.get("Status") or "")
    return int(match.group(1)) if match else None


def time_limit(item: PollItem, found: dict[str, Any]) -> int | None:
    label = (found.get("Labels") or {}).get(LABEL_TIME_LIMIT) or ""
    return item.time_limit_s or (int(label) if label.isdigit() else None)


def past_time_limit(item: PollItem, found: dict[str, Any], now: float) -> bool:
    # The poll item's values win; the labels cover a control plane that sent none.
    started = item.submitted_at or float(found.get("Created") or 0) or None
    limited = PollItem(item.process_id, item.handle, submitted_at=started,
                       time_limit_s=time_limit(item, found))
    return time_limit_passed(limited, now)


def finished(run_dir: Path, found: dict[str, Any], code: int | None,
             exec_failure: Callable[[], str | None]) -> Status:
    """The terminal status of an exited container: stopped or timed out as its run dir's
    markers say, else by its exit code. ``exec_failure`` is asked (it reads the log's end)
    only for a code that may mean the command could not be started."""
    if (run_dir / "cancelled").exists():
        return Status(State.STOPPED, code, "stopped on request")
    if (run_dir / "timed_out").exists():
        limit = (run_dir / "timed_out").read_text()
        return Status(State.FAILED, code, f"time limit of {limit} s exceeded")
    if code == 0:
        return Status(State.SUCCEEDED, 0)
    if code == 137:
        memory = (found.get("Labels") or {}).get(LABEL_MEMORY)
        limit = f" (limit {memory} MB)" if memory else ""
        return Status(State.FAILED, code,
                      f"killed (exit code 137): out of memory{limit} or SIGKILL")
    if code is not None and 0 < code < 128 and (why := exec_failure()):
        return Status(State.FAILED, code,
                      f"the command {found.get('Command') or ''!r} could not be started "
                      f"in image {found.get('Image')!r}: {why}")
    hints = {126: " (command not executable)", 127: " (command not found)"}
    hint = hints.get(code, "") if code is not None else ""
    return Status(State.FAILED, code, f"exited with code {code}{hint}")


def exec_failure_in(tail: bytes) -> str | None:
    """The init's complaint in the log's last lines when the command could not be executed."""
    match = _EXEC_FAILED.search(tail.decode("utf-8", errors="replace"))
    if match is None:
        return None
    return (match.group(1) or f"{match.group(2)}: {match.group(3)}").strip()


def started_at(attrs: dict[str, Any] | None) -> float | None:
    """When the engine says the container started (inspect's ``State.StartedAt``, RFC 3339
    with nanoseconds), in seconds since the epoch; None when it does not say."""
    text = ((attrs or {}).get("State") or {}).get("StartedAt") or ""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)",
                         text.strip())
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    try:
        when = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    seconds = when.timestamp() + float(f"0.{fraction or 0}")
    return seconds if seconds > 0 else None
