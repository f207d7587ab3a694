"""The interface every target implements, and the poll written once for all of them.

A target (local process, Docker, Slurm, ECS) subclasses :class:`Executor` and implements five
small methods: ``find``, ``start``, ``statuses``, ``cancel`` and ``read_log`` (``release`` is
optional). The template methods ``submit`` and ``poll`` hold the rules that must not differ
between targets: submission looks for the run's job before it starts one, a poll asks the
target once for every handle, a stop is carried out on every poll until the job has ended, and
a terminal state is held back until the last log bytes are shipped.

Handles are opaque strings chosen by the executor; the control plane stores them and hands
them back, never parses them.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from ..contract import (
    LOG_CHUNK_BYTES,
    Event,
    JobSpec,
    PollItem,
    State,
    decode_log,
    is_terminal,
    this_host,
)

log = logging.getLogger(__name__)


class ExecutorError(Exception):
    """A target refused or failed an operation.

    ``permanent`` errors (a missing image, a command that does not exist, a rejected script)
    fail the process at once with this message; the others are retried with backoff.
    """

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass
class Submission:
    """A job on the target: its handle, and the state it is known to be in."""

    handle: str
    state: State = State.SUBMITTED
    host: str | None = None
    message: str = ""


@dataclass
class Status:
    """What the target says of one handle. ``missing`` means it does not know the handle."""

    state: State | None = None
    exit_code: int | None = None
    message: str = ""
    missing: bool = False


@dataclass
class LogChunk:
    data: bytes = b""
    cursor: str | None = None


class Executor(ABC):
    """One target kind. Instances are cheap; a worker makes one per message."""

    target: ClassVar[str]
    # False: the worker opens the job spec's secrets into ``spec.env`` before ``submit``.
    # True: ``start`` opens ``spec.secret_env`` itself, to keep the values out of what the
    # target saves with the job (Slurm stores a job's environment).
    opens_secrets: ClassVar[bool] = False

    def __init__(self, pool: str, settings: dict[str, Any] | None = None):
        self.pool = pool
        self.settings = dict(settings or {})
        self.host = this_host()

    # --- what each target implements -------------------------------------------------------

    @abstractmethod
    def find(self, spec: JobSpec) -> Submission | None:
        """The job already started for ``spec.process_id`` (found by ``spec.job_name`` or a
        label derived from the process id), or None. Must not start anything."""

    @abstractmethod
    def start(self, spec: JobSpec) -> Submission:
        """Start the job and return at once: nothing waits for it to run. Raises
        ExecutorError (permanent when retrying cannot help)."""

    @abstractmethod
    def statuses(self, items: list[PollItem]) -> dict[str, Status]:
        """The state of every handle in ``items``, keyed by handle, from as few target calls as
        the target allows (one ``squeue``, one container list, ``describe_tasks`` per 100).
        A handle the target does not know is left out or given ``Status(missing=True)``.
        Raises ExecutorError when the target cannot be asked: a failed poll decides nothing."""

    @abstractmethod
    def cancel(self, handle: str) -> None:
        """Ask the target to stop the job. Idempotent: a finished or unknown job is a no-op."""

    @abstractmethod
    def read_log(self, item: PollItem, limit: int) -> LogChunk:
        """Up to ``limit`` bytes of the job's output from ``item.log_offset`` (or from the
        target's own ``item.log_cursor``). Empty when there is nothing new."""

    def release(self, handle: str) -> None:  # noqa: B027 - optional hook, no-op by default
        """Free what the finished job still holds on the target (a container, a work dir).
        Called only after its terminal event, with its last log bytes, has been sent."""

    # --- the rules written once -------------------------------------------------------------

    def submit(self, spec: JobSpec) -> Submission:
        """Start ``spec`` unless it already runs: a job spec delivered twice gives one job."""
        found = self.find(spec)
        if found is not None:
            log.info("process %s already has job %s", spec.process_id, found.handle)
            return found
        return self.start(spec)

    def poll(self, items: list[PollItem]) -> list[Event]:
        """Answer for every item, with one batched status call. Returns one event per item."""
        statuses = self.statuses(items)
        # The target answered now; the log reads that follow take a while for a big batch.
        seen_at = time.time()
        events = []
        for item in items:
            status = statuses.get(item.handle) or Status(missing=True)
            events.append(self._observe(item, status, seen_at))
        return events

    def _observe(self, item: PollItem, status: Status, seen_at: float) -> Event:
        event = Event(process_id=item.process_id, source=f"{self.target}@{self.host}",
                      at=seen_at)
        if status.missing:
            event.missing = True
            event.message = status.message or f"{self.target} does not know handle {item.handle}"
            return event
        if item.stop_requested and (status.state is None or not is_terminal(status.state)):
            self._cancel_quietly(item.handle)
        chunk = self._read_log_quietly(item)
        log_drained = chunk is not None and len(chunk.data) < LOG_CHUNK_BYTES
        chunk = chunk or LogChunk()
        text, used = decode_log(chunk.data)
        if used:
            event.log, event.log_offset = text, item.log_offset
            event.log_end = item.log_offset + used
        if chunk.cursor:
            event.log_cursor = chunk.cursor
        # A job's end is reported only with its last log bytes: while more may be unread (a
        # full chunk, or a read that failed), the terminal state waits for the next poll.
        if status.state is not None and (not is_terminal(status.state) or log_drained):
            event.state = status.state
            event.exit_code = status.exit_code
            event.message = status.message
        return event

    def _cancel_quietly(self, handle: str) -> None:
        try:
            self.cancel(handle)
        except ExecutorError as exc:  # asked again on the next poll
            log.warning("cancel of %s failed: %s", handle, exc)

    def _read_log_quietly(self, item: PollItem) -> LogChunk | None:
        try:
            return self.read_log(item, LOG_CHUNK_BYTES)
        except ExecutorError as exc:  # None: the logs come on a later poll
            log.warning("log read of %s failed: %s", item.handle, exc)
            return None


def time_limit_passed(item: PollItem, now: float | None = None) -> bool:
    """True when a job started at ``item.submitted_at`` has run past its time limit. For
    targets that do not enforce limits themselves (Docker, ECS)."""
    if not item.time_limit_s or not item.submitted_at:
        return False
    return (now or time.time()) - item.submitted_at > item.time_limit_s
