"""The interface every target implements, and the poll written once for all of them.

A target (local process, Docker, Slurm, ECS) subclasses :class:`Executor` and implements five
small methods: ``find``, ``start``, ``statuses``, ``cancel`` and ``read_log`` (``release``,
``cancel_in_poll`` and ``read_log_in_poll`` are optional). The template methods ``submit`` and
``poll`` hold the rules that must not differ between targets: submission refuses a job its
target cannot run and looks for the run's job before it starts one, a poll asks the target once
for every handle, a stop is carried out on every poll until the job has ended, a terminal
state is held back until the last log bytes are shipped, and it goes out only with the job's
outputs stored (``collect_outputs``; a failure to store them fails the job with the reason).

Handles are opaque strings chosen by the executor; the control plane stores them and hands
them back, never parses them.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .. import outputs
from ..contract import (
    LOG_CHUNK_BYTES,
    TARGET_FACTS,
    Event,
    JobSpec,
    PollItem,
    State,
    is_terminal,
    job_refusals,
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
    """A job on the target: its handle, and the state it is known to be in. ``started_at``:
    when the target says the job started (seconds since the epoch), when it says."""

    handle: str
    state: State = State.SUBMITTED
    host: str | None = None
    message: str = ""
    started_at: float | None = None


@dataclass
class Status:
    """What the target says of one handle. ``missing`` means it does not know the handle.
    ``reason``: why the target ended the job, when it says (``contract.END_REASONS``)."""

    state: State | None = None
    exit_code: int | None = None
    message: str = ""
    missing: bool = False
    reason: str = ""


@dataclass
class LogChunk:
    data: bytes = b""
    cursor: str | None = None


class Executor(ABC):
    """One target kind. Instances are cheap; a worker makes one per message."""

    target: ClassVar[str]

    def __init__(self, pool: str, settings: dict[str, Any] | None = None):
        self.pool = pool
        self.settings = dict(settings or {})
        self.host = this_host()

    @property
    def opens_secrets(self) -> bool:
        """False: the worker opens the job spec's secrets into ``spec.env`` before ``submit``.
        True: ``start`` opens ``spec.secret_env`` itself, to keep the values out of what the
        target saves with the job (Slurm stores a job's environment). A fact of the target's
        entry in ``contract.TARGET_TABLE``."""
        return TARGET_FACTS[self.target].opens_secrets

    def cluster_health(self) -> dict[str, Any] | None:
        """What the worker's heartbeat says of the cluster behind the pool: ``reachable``,
        ``rest_api_version`` (None where there is none) and ``detail``; None for a target
        that has no cluster of its own to report (the Slurm targets do)."""
        return None

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

    def cancel_in_poll(self, item: PollItem, status: Status) -> None:
        """The stop a poll carries for ``item``, which ``statuses`` just described as
        ``status``: ``cancel`` unless the target overrides it. What a target learnt in a poll
        travels in its Status (a subclass may carry more), never on the instance."""
        self.cancel(item.handle)

    def read_log_in_poll(self, item: PollItem, status: Status, limit: int) -> LogChunk:
        """The log read a poll makes for ``item``, given its ``status`` from the same poll:
        ``read_log`` unless the target overrides it."""
        return self.read_log(item, limit)

    def outputs_place(self, item: PollItem) -> tuple[Path, Path] | None:
        """Where the ended job of ``item`` left its outputs on this worker's file system: its
        output dir and the file that keeps its outputs spec (None: the target keeps none
        here). Targets with run dirs say; ``collect_outputs`` does the rest."""
        return None

    def collect_outputs(self, item: PollItem, status: Status) -> outputs.StoredOutputs | None:
        """Store the outputs of the job of ``item``, which ``status`` says has ended; None
        when it keeps none. Raises OutputsError (or ExecutorError) when they cannot be
        stored. Called again for a poll delivered again: the same keys get the same bytes."""
        place = self.outputs_place(item)
        if place is None:
            return None
        out_dir, spec_file = place
        spec = outputs.load_spec(spec_file)
        if spec is None:
            return None
        stored = outputs.store_outputs(out_dir, spec)
        outputs.load_spec(spec_file)  # AlreadyReleased: another poll released it meanwhile
        return stored

    # --- the rules written once -------------------------------------------------------------

    def submit(self, spec: JobSpec) -> Submission:
        """Start ``spec`` unless it already runs: a job spec delivered twice gives one job.
        A job the target cannot run (``contract.job_refusals``) is a permanent ExecutorError,
        before the target is asked anything: its pipeline was loaded by an older control plane
        that did not refuse it."""
        refusals = job_refusals(self.target, image=spec.image, script=spec.script,
                                command=spec.command)
        if refusals:
            raise ExecutorError("; ".join(refusals), permanent=True)
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
            event = self._observe(item, status, seen_at)
            if event.state is not None and is_terminal(event.state):
                self._store_outputs(item, status, event)
            events.append(event)
        return events

    def _store_outputs(self, item: PollItem, status: Status, event: Event) -> None:
        """Put the job's stored outputs on its terminal ``event``, before anything is sent
        or released; what was left out joins its message. A job whose outputs could not be
        stored has not succeeded: the event says FAILED, with the reason."""
        try:
            stored = self.collect_outputs(item, status)
        except outputs.AlreadyReleased:
            # Its end, with its outputs, went out before the run was released: this poll
            # (built before that event was applied) has nothing to add; an end reported now,
            # with an output dir already removed, would say the job kept nothing.
            event.state, event.exit_code, event.message = None, None, ""
            return
        except (outputs.OutputsError, ExecutorError) as exc:
            log.warning("outputs of %s not stored: %s", item.process_id, exc)
            if event.state == State.SUCCEEDED:
                event.state = State.FAILED
            event.message = _joined(event.message, f"outputs not stored: {exc}")
            return
        if stored is not None:
            event.outputs = stored.outputs
            event.message = _joined(event.message, stored.message)

    def _observe(self, item: PollItem, status: Status, seen_at: float) -> Event:
        event = Event(process_id=item.process_id, source=f"{self.target}@{self.host}",
                      at=seen_at, attempt=item.attempt)
        if status.missing:
            event.missing = True
            event.message = status.message or f"{self.target} does not know handle {item.handle}"
            return event
        if item.stop_requested and (status.state is None or not is_terminal(status.state)):
            self._cancel_quietly(item, status)
        chunk = self._read_log_quietly(item, status)
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
            event.reason = status.reason
        return event

    def _cancel_quietly(self, item: PollItem, status: Status) -> None:
        try:
            self.cancel_in_poll(item, status)
        except ExecutorError as exc:  # asked again on the next poll
            log.warning("cancel of %s failed: %s", item.handle, exc)

    def _read_log_quietly(self, item: PollItem, status: Status) -> LogChunk | None:
        try:
            return self.read_log_in_poll(item, status, LOG_CHUNK_BYTES)
        except ExecutorError as exc:  # None: the logs come on a later poll
            log.warning("log read of %s failed: %s", item.handle, exc)
            return None


def _joined(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def time_limit_passed(item: PollItem, now: float | None = None) -> bool:
    """True when a job started at ``item.submitted_at`` has run past its time limit. For
    targets that do not enforce limits themselves (Docker, ECS)."""
    if not item.time_limit_s or not item.submitted_at:
        return False
    return (now or time.time()) - item.submitted_at > item.time_limit_s


def decode_log(data: bytes) -> tuple[str, int]:
    """Decode ``data`` up to its last whole UTF-8 character: (text, bytes consumed).

    A chunk cut in the middle of a character keeps the partial bytes for the next read, so
    offsets stay in bytes of the original output and no character is mangled at a boundary.
    """
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        try:
            return data[:cut].decode("utf-8"), cut
        except UnicodeDecodeError as exc:
            if exc.start < cut - 4:  # a bad byte well before the end: not a cut character
                return data.decode("utf-8", errors="replace"), len(data)
    return data.decode("utf-8", errors="replace"), len(data)
