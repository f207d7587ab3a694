"""Attempts and retries: a process runs as one job on its target per attempt, and its
pipeline's ``retry:`` decides whether an ended job starts another.

- The process row is its current attempt (state, handle, exit code, stamps); every attempt
  has a ``ProcessAttempt`` row that follows it while it runs and keeps what it ended with.
- Within an attempt states only move forward (``workers.contract.can_move``). Every event
  names its attempt and one of an earlier attempt changes nothing (``events.news_of``).
- A retry is the one move back to PENDING, made here and nowhere else, in the transaction
  that applies the attempt's end: the attempt's end is recorded as it happened (RUNNING ->
  FAILED, attempt 1), then the retry as an event of its own (FAILED -> PENDING, attempt 2,
  "retry: attempt 2 of 3 after preempted"). The new attempt waits for admission like a new
  process, and no earlier than the pipeline's ``delay``.
- A stop is never retried, nor a job that succeeded.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from apps.processes.models import Process, ProcessAttempt, ProcessEvent, ProcessLogChunk
from apps.webhooks.services import deliveries_record
from workers.contract import State

# The control plane's own source (transitions.CONTROL_PLANE, not imported: transitions
# imports this module).
CONTROL_PLANE = "control"
# What an attempt row copies of its process while the attempt runs.
FOLLOWED = ("state", "handle", "host", "exit_code", "message", "submitted_at", "started_at")
# Ends that a pipeline's retry may start another attempt after.
RETRIED_STATES = frozenset({State.FAILED, State.LOST})


def retry_cause(process: Process, to: State, exit_code: int | None, reason: str) -> str:
    """Why ``process``'s ending job (in ``to``, with ``exit_code`` and the target's
    ``reason``) may be retried by its pipeline's policy ("preempted", "exit code 75"); "" when
    the policy does not cover it. Whether attempts remain is ``attempts_left``'s."""
    policy = process.pipeline_version.retry
    if not policy or to not in RETRIED_STATES or process.stop_requested_at is not None:
        return ""
    if to == State.LOST:
        reason = "lost"
    if reason and reason in policy.get("on", ()):
        return reason
    if to == State.FAILED and exit_code is not None and exit_code in policy.get(
            "exit_codes", ()):
        return f"exit code {exit_code}"
    return ""


def attempts_allowed(process: Process) -> int:
    return int((process.pipeline_version.retry or {}).get("attempts", 1))


def attempts_left(process: Process) -> bool:
    return process.attempt < attempts_allowed(process)


def exhausted_message(process: Process, message: str, cause: str) -> str:
    """The message of a process whose last attempt ended for a retried ``cause``."""
    of = f"attempt {process.attempt} of {attempts_allowed(process)}"
    return f"{message} ({cause}; {of})" if message else f"{cause}; {of}"


def retry(process: Process, ended: State, *, exit_code: int | None, message: str,
          reason: str, cause: str, source: str, at: datetime | None) -> list[str]:
    """End the current attempt of a locked ``process`` in ``ended`` and start the next one:
    PENDING, not admitted, no handle, admitted no earlier than the pipeline's delay. Records
    the attempt's end and the retry as two events. Returns the process fields to save."""
    from apps.processes.transitions import move  # transitions imports this module

    move(process, ended, source, message, at=at, retried=True)  # the attempt's end
    process.exit_code, process.message = exit_code, message
    attempt_sync(process, reason=reason)
    allowed = attempts_allowed(process)
    ended_state = process.state
    process.attempt += 1
    now = timezone.now()
    delay = int((process.pipeline_version.retry or {}).get("delay_s", 0))
    note = f"retry: attempt {process.attempt} of {allowed} after {cause}"
    if delay:
        note += f", not before {delay} s"
    ProcessEvent.objects.create(process=process, from_state=ended_state,
                                to_state=State.PENDING, source=CONTROL_PLANE,
                                detail=f"{note} ({message})" if message else note,
                                at=max(now, process.finished_at or now),
                                attempt=process.attempt)
    deliveries_record(process, ended_state, State.PENDING, now)  # heard by "all" hooks only
    ProcessAttempt.objects.create(process=process, number=process.attempt, created_at=now)
    _log_boundary(process, note)
    process.state = State.PENDING
    process.not_before = now + timedelta(seconds=delay) if delay else None
    process.message = note
    for name in ("exit_code", "admitted_at", "spec_sent_at", "missing_since", "queued_at",
                 "submitted_at", "started_at", "finished_at"):
        setattr(process, name, None)
    process.handle = process.host = process.log_cursor = ""
    return ["state", "attempt", "not_before", "message", "exit_code", "admitted_at",
            "spec_sent_at", "missing_since", "queued_at", "submitted_at", "started_at",
            "finished_at", "handle", "host", "log_cursor", "log_size", "log_kept", "log_base",
            "updated_at"]


def _log_boundary(process: Process, note: str) -> None:
    """A line in the process's log where the next attempt's output starts; the next job's
    bytes (counted from 0 on the target) go on from there."""
    line = f"\n[orchestration] {note}\n".encode()
    ProcessLogChunk.objects.create(process=process, offset=process.log_size,
                                   end=process.log_size + len(line), text=line.decode())
    process.log_size += len(line)
    process.log_kept += len(line)
    process.log_base = process.log_size


def attempt_sync(process: Process, *, reason: str = "") -> None:
    """Copy what ``process`` says of its current attempt to the attempt's row (made when a
    row inserted without one, by plain SQL, has none)."""
    values = {name: getattr(process, name) for name in FOLLOWED}
    values["ended_at"] = process.finished_at
    if reason:
        values["reason"] = reason
    rows = ProcessAttempt.objects.filter(process=process, number=process.attempt)
    if not rows.update(**values):
        ProcessAttempt.objects.create(process=process, number=process.attempt,
                                      created_at=process.created_at or timezone.now(),
                                      **values)


def attempts_queued(processes: list[Process]) -> None:
    """``attempt_sync`` after PENDING -> QUEUED, for a batch: only the state moved, so one
    UPDATE per attempt number; a process whose attempt has no row gets one as there."""
    by_number: dict[int, list] = {}
    for process in processes:
        by_number.setdefault(process.attempt, []).append(process.pk)
    updated = set()
    for number, ids in by_number.items():
        rows = ProcessAttempt.objects.filter(process_id__in=ids, number=number)
        if rows.update(state=State.QUEUED) != len(ids):
            updated |= set(rows.values_list("process_id", flat=True))
        else:
            updated |= set(ids)
    for process in processes:
        if process.pk not in updated:
            process.state = State.QUEUED
            attempt_sync(process)


def attempt_first(process: Process) -> ProcessAttempt:
    """The row of a new process's first attempt."""
    return ProcessAttempt.objects.create(process=process, number=1,
                                         created_at=process.created_at)
