"""The one table of Slurm states, and the exit codes Slurm reports in its three spellings.

Every Slurm state squeue, sacct and slurmrestd can name is mapped here, the uncomfortable ones
too (``TIMEOUT``, ``OUT_OF_MEMORY``, ``NODE_FAIL``, ``PREEMPTED``, ``BOOT_FAIL``, ``DEADLINE``);
a state missing from the table decides nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ...contract import State, is_terminal
from ..base import Status

log = logging.getLogger(__name__)

# Slurm's job state (as squeue, sacct and slurmrestd spell it) -> our state, and what it means.
SLURM_STATES: dict[str, tuple[State, str]] = {
    "PENDING": (State.SUBMITTED, "waiting in the Slurm queue"),
    "CONFIGURING": (State.SUBMITTED, "its nodes are being configured"),
    "REQUEUED": (State.SUBMITTED, "requeued by Slurm"),
    "REQUEUE_HOLD": (State.SUBMITTED, "requeued and held by Slurm"),
    "REQUEUE_FED": (State.SUBMITTED, "requeued by the federation"),
    "RESV_DEL_HOLD": (State.SUBMITTED, "held: its reservation was deleted"),
    "RUNNING": (State.RUNNING, ""),
    "COMPLETING": (State.RUNNING, "ending: Slurm is cleaning up"),
    "SUSPENDED": (State.RUNNING, "suspended by Slurm"),
    "STOPPED": (State.RUNNING, "stopped by a signal, still holding its nodes"),
    "RESIZING": (State.RUNNING, "being resized"),
    "SIGNALING": (State.RUNNING, "being signalled"),
    "STAGE_OUT": (State.RUNNING, "staging out its files"),
    "COMPLETED": (State.SUCCEEDED, ""),
    "FAILED": (State.FAILED, "failed"),
    "CANCELLED": (State.STOPPED, "cancelled"),
    "TIMEOUT": (State.FAILED, "ran past its time limit"),
    "OUT_OF_MEMORY": (State.FAILED, "ran out of memory"),
    "NODE_FAIL": (State.FAILED, "its node failed"),
    "PREEMPTED": (State.FAILED, "preempted by a job of higher priority"),
    "BOOT_FAIL": (State.FAILED, "its node failed to boot"),
    "DEADLINE": (State.FAILED, "could not end before its deadline"),
    "SPECIAL_EXIT": (State.FAILED, "held after a special exit"),
}


# Slurm states that say why a job ended, as ``Event.reason`` says it (a pipeline's
# ``retry.on``).
SLURM_REASONS = {
    "PREEMPTED": "preempted",
    "NODE_FAIL": "node_failure",
    "BOOT_FAIL": "node_failure",
}


def slurm_state_name(raw: str) -> str:
    """``CANCELLED by 0``, ``CANCELLED+``, ``cancelled`` -> ``CANCELLED``."""
    return (raw.split() or [""])[0].rstrip("+").upper()


@dataclass
class JobRecord:
    """One job as Slurm lists it. ``exit_code`` is already a plain exit status."""

    job_id: str
    name: str
    state: str
    exit_code: int | None = None
    reason: str = ""
    submitted: float | None = None


def slurm_status(record: JobRecord, exit_file: int | None = None) -> Status:
    """Our Status for a Slurm job. ``exit_file`` is the code the job wrote, when it did."""
    name = slurm_state_name(record.state)
    if name not in SLURM_STATES:
        log.warning("job %s is in Slurm state %r, not in our table", record.job_id, record.state)
        return Status(message=f"Slurm state {record.state} is not known here; deciding nothing")
    state, meaning = SLURM_STATES[name]
    reason = record.reason if record.reason not in ("", "None", "(null)") else ""
    if not is_terminal(state):
        return Status(state, message="; ".join(x for x in (meaning, reason) if x))
    code = exit_file if exit_file is not None else record.exit_code
    if state is State.SUCCEEDED:
        return Status(state, 0 if code is None else code)
    if name == "FAILED" and code:
        return Status(state, code, f"exited with code {code}")
    if not code:  # sacct says 0:0 for a TIMEOUT: trust the state, not that code
        code = None
    return Status(state, code, f"{meaning} (Slurm {name}{f', {reason}' if reason else ''})",
                  reason=SLURM_REASONS.get(name, ""))


def has_ended(record: JobRecord) -> bool:
    """Whether Slurm lists ``record`` in a terminal state (a state not in the table: no)."""
    state, _ = SLURM_STATES.get(slurm_state_name(record.state), (State.RUNNING, ""))
    return is_terminal(state)


def exit_from_wait_status(raw: int | None) -> int | None:
    """squeue's ``exit_code`` and slurmrestd's are raw wait statuses: 768 is exit 3."""
    if raw is None or raw < 0:
        return None
    signal = raw & 0x7F
    return 128 + signal if signal else (raw >> 8) & 0xFF


def exit_from_sacct(text: str) -> int | None:
    """sacct's ``3:0`` (code:signal) -> 3; ``0:15`` -> 143."""
    code, _, signal = text.partition(":")
    try:
        return 128 + int(signal) if signal and int(signal) else int(code)
    except ValueError:
        return None
