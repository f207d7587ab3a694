"""What ECS says of a task, in our states: the mapping in one place.

A poll's ``describe_tasks`` answer gives each task a lastStatus, a desiredStatus, a stopCode and
its containers' exit codes; :func:`task_status` turns one task into a :class:`TaskStatus`,
which also carries what the rest of the same poll needs to know of it (already stopping,
stopped, its log read due), so nothing of a poll is kept on the executor.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...contract import State
from ..base import Status

STOP_REASON = "orchestration: stop requested"
TIME_LIMIT_REASON = "orchestration: time limit"
TASK_ARN = re.compile(r"^(arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task/([\w-]+/)?)?[\w-]{1,64}$")

# lastStatus of a task that has not STOPPED. ``None``: on its way down (desiredStatus STOPPED);
# it counts as RUNNING if ECS gave it a startedAt, else it never ran and is still SUBMITTED.
LAST_STATUS: dict[str, State | None] = {
    "PROVISIONING": State.SUBMITTED,
    "PENDING": State.SUBMITTED,
    "ACTIVATING": State.SUBMITTED,
    "RUNNING": State.RUNNING,
    "DEACTIVATING": None,
    "STOPPING": None,
    "DEPROVISIONING": None,
}
# stopCode of a STOPPED task -> (state, what the user is told). ``None``: the essential
# container's exit code decides (0 SUCCEEDED, anything else FAILED).
STOP_CODES: dict[str, tuple[State, str] | None] = {
    "EssentialContainerExited": None,
    "UserInitiated": (State.STOPPED, "stopped"),
    "TaskFailedToStart": (State.FAILED, "the task failed to start"),
    "SpotInterruption": (State.FAILED, "interrupted: Spot capacity was reclaimed"),
    "TerminationNotice": (State.FAILED, "its container instance was terminated"),
    "ServiceSchedulerInitiated": (State.FAILED, "stopped by the ECS service scheduler"),
}
# stopCode -> why the job ended, as ``Event.reason`` says it (a pipeline's ``retry.on``).
STOP_REASONS = {
    "SpotInterruption": "spot_interruption",
    "TerminationNotice": "node_failure",
}


@dataclass
class TaskStatus(Status):
    """A task's Status, with what the same poll's stop and log read need to know of it."""

    stopping: bool = False  # ECS is already stopping it: a stop_task would change nothing
    stopped: bool = False  # lastStatus STOPPED: its output is complete, its log is drained
    log_due: bool = False  # this poll reads its log (stopped, or running and its turn)
    task: dict[str, Any] | None = None  # ECS's answer on it (its overrides, its containers)


def task_status(task: dict[str, Any], container_name: str, settle_s: float) -> TaskStatus:
    """Our status of one task of a ``describe_tasks`` answer."""
    status = _state(task, container_name, settle_s)
    status.stopping = task.get("desiredStatus") == "STOPPED"
    status.stopped = status.log_due = task.get("lastStatus") == "STOPPED"
    status.task = task
    return status


def _state(task: dict[str, Any], container_name: str, settle_s: float) -> TaskStatus:
    last = task.get("lastStatus", "")
    started = State.RUNNING if task.get("startedAt") else State.SUBMITTED
    if last != "STOPPED":
        state = LAST_STATUS.get(last, started)
        return TaskStatus(state or started, message=f"ECS: {last.lower()}")
    stopped_at = task.get("stoppedAt")
    since = time.time() - stopped_at.timestamp() if isinstance(stopped_at, datetime) else None
    # awslogs delivers the last lines a moment after the task stops: wait for them.
    if since is not None and since < settle_s:
        return TaskStatus(started, message="ECS: stopped; waiting for its last log lines")
    return _ended(task, container_name)


def _ended(task: dict[str, Any], container_name: str) -> TaskStatus:
    """What a stopped task's answer means."""
    code = task.get("stopCode", "")
    reason = task.get("stoppedReason") or ""
    container = _essential(task, container_name)
    exit_code = container.get("exitCode")
    detail = "; ".join(x for x in (reason, container.get("reason") or "") if x)
    if code == "UserInitiated" and reason.startswith(TIME_LIMIT_REASON):
        return TaskStatus(State.FAILED, exit_code, reason.removeprefix("orchestration: "))
    rule = STOP_CODES.get(code)
    if rule is not None:
        state, what = rule
        return TaskStatus(state, exit_code, f"{what}: {detail}" if detail else what,
                          reason=STOP_REASONS.get(code, ""))
    if exit_code == 0:  # EssentialContainerExited, or a stopCode ECS added since
        return TaskStatus(State.SUCCEEDED, 0)
    if exit_code is None:
        return TaskStatus(State.FAILED, None, f"the task stopped without an exit code: {detail}")
    why = f": {container['reason']}" if container.get("reason") else ""
    return TaskStatus(State.FAILED, exit_code, f"exited with code {exit_code}{why}")


def _essential(task: dict[str, Any], name: str) -> dict[str, Any]:
    containers = task.get("containers") or [{}]
    return next((c for c in containers if c.get("name") == name), containers[0])


def match_by_id(tasks: dict[str, dict[str, Any]], handle: str) -> dict[str, Any] | None:
    """The task of ``tasks`` (keyed by ARN) whose task id is ``handle``'s."""
    task_id = handle.rsplit("/", 1)[-1]
    return next((t for arn, t in tasks.items() if arn.rsplit("/", 1)[-1] == task_id), None)
