"""Early polls: a job its submission left SUBMITTED (queued in Slurm) is asked about again
soon, so its RUNNING is seen within a fraction of a second of its start rather than at the
beat's next poll.

The worker that submitted it asks the target about just the handles it follows, in one
batched call per pool and round (one ``squeue`` for all that are due), at 0.25 s steps for
the first two seconds, then backing off (0.5, 1, 2 ... s, never past the pool's poll
interval, ``ORCH_POLL_INTERVAL_S`` as the control plane's beat has it) until that interval,
and at least ten seconds, has passed: by then the beat's polls have it. A follow-up reports
RUNNING and nothing else; it stops at RUNNING, at an end (the beat's poll reports that, with
the last log bytes and the outputs), at a handle the target does not know, or when its time
is up.

This is the only list a worker keeps, and it is short and bounded: at most ``MAX_FOLLOWED``
handles, each for at most the poll interval (or ten seconds). A worker that restarts loses it
and nothing else: the beat's poll sees the same RUNNING a little later. It runs in one daemon
thread per worker process and holds no worker slot.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .contract import Event, PollItem, State

log = logging.getLogger(__name__)

# Seconds between a job's follow-ups, from its submission: 0.25 s steps for two seconds, then
# backing off, never longer than the poll interval. They end once the poll interval (and at
# least FOLLOW_AT_LEAST_S) has passed: a short interval's beat may be busy or down.
STEPS_S = (0.25,) * 8 + (0.5, 1, 2, 4, 8, 16, 32)
FOLLOW_AT_LEAST_S = 10.0
MAX_FOLLOWED = 1000
# Handles due within this many seconds of each other are asked about in one call.
COALESCE_S = 0.05
DEFAULT_INTERVAL_S = 2.0
MAX_INTERVAL_S = 120.0


def interval_s() -> float:
    """How long a job is followed: the beat's poll interval, as this worker's env says."""
    try:
        value = float(os.environ.get("ORCH_POLL_INTERVAL_S", DEFAULT_INTERVAL_S))
    except ValueError:
        value = DEFAULT_INTERVAL_S
    return min(max(value, 0.0), MAX_INTERVAL_S)


@dataclass(order=True)
class _Followed:
    due: float
    order: int
    pool: str = field(compare=False)
    target: str = field(compare=False)
    settings: dict[str, Any] = field(compare=False)
    item: PollItem = field(compare=False)
    source: str = field(compare=False)
    submitted: float = field(compare=False)
    step: int = field(compare=False, default=0)


class FollowUps:
    """The followed handles of one worker process and the thread that asks about them.

    ``send(events)`` sends events to the control plane; ``executor(target, pool, settings)``
    makes the executor that asks the target."""

    def __init__(self, send, executor, clock=time.monotonic):
        self._send, self._executor, self._clock = send, executor, clock
        self._due: list[_Followed] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def follow(self, *, pool: str, target: str, settings: dict[str, Any], item: PollItem,
               source: str) -> bool:
        """Follow ``item``'s job until it runs; False when the list is full or following
        is off (the beat's poll sees it then)."""
        if interval_s() <= 0:
            return False
        now = self._clock()
        with self._wake:
            if len(self._due) >= MAX_FOLLOWED:
                return False
            heapq.heappush(self._due, _Followed(now + STEPS_S[0], next(self._order), pool,
                                                target, dict(settings), item, source, now))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="follow-ups",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()
        return True

    def __len__(self) -> int:
        with self._wake:
            return len(self._due)

    def _run(self) -> None:
        while True:
            due = self._take_due()
            try:
                self._round(due)
            except Exception:  # a follow-up is a shortcut: its failure decides nothing
                log.exception("follow-up of %d jobs failed", len(due))

    def _take_due(self) -> list[_Followed]:
        with self._wake:
            while True:
                now = self._clock()
                if self._due and self._due[0].due <= now:
                    taken = []  # with those due a moment later: one call asks for them all
                    while self._due and self._due[0].due <= now + COALESCE_S:
                        taken.append(heapq.heappop(self._due))
                    return taken
                self._wake.wait(self._due[0].due - now if self._due else None)

    def _round(self, due: list[_Followed]) -> None:
        """One batched status call per pool for every due handle; RUNNING goes out at once."""
        groups: dict[tuple[str, str], list[_Followed]] = defaultdict(list)
        for entry in due:
            groups[(entry.target, entry.pool)].append(entry)
        for (target, pool), entries in groups.items():
            try:
                executor = self._executor(target, pool, entries[0].settings)
                statuses = executor.statuses([e.item for e in entries])
            except Exception as exc:  # asked again at the next step
                log.info("follow-up of %d jobs of pool %s failed: %s", len(entries), pool, exc)
                statuses = {}
            seen_at = time.time()
            running, again = [], []
            for entry in entries:
                status = statuses.get(entry.item.handle)
                if status is not None and status.state == State.RUNNING:
                    running.append(Event(entry.item.process_id, entry.source,
                                         state=State.RUNNING, at=seen_at,
                                         attempt=entry.item.attempt, message=status.message))
                elif status is None or (not status.missing
                                        and status.state in (None, State.SUBMITTED)):
                    again.append(entry)  # not answered, or still queued
            if running:
                try:
                    self._send(running)
                except Exception as exc:  # the beat's poll reports it
                    log.warning("RUNNING of %d jobs not sent: %s", len(running), exc)
            self._again(again)

    def _again(self, entries: list[_Followed]) -> None:
        now, interval = self._clock(), interval_s()
        until = max(interval, FOLLOW_AT_LEAST_S)
        with self._wake:
            for entry in entries:
                entry.step += 1
                step = min(STEPS_S[min(entry.step, len(STEPS_S) - 1)], interval)
                entry.due = max(entry.due + step, now)
                if entry.due - entry.submitted > until:
                    continue
                entry.order = next(self._order)
                heapq.heappush(self._due, entry)
