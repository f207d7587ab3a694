"""Drill 10: SIGKILL the control consumer and the beat, several times, while a burst is being
admitted.

A pool of capacity 3 and 30 runs posted at once: admission goes on in the web (on each
create), in the control consumer (as each end is applied) and in the beat (every round). Both
are killed three times while the burst goes through, each time started again. Asserted from
the database (the slots held and the runs on the target, from each process's record) and from
the target (the job processes alive on this host, sampled all along): never more than 3 at
once; all 30 end SUCCEEDED, each with exactly one job.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.drills.harness import Expect
from tests.drills.infra import wait_for
from tests.drills.local_backend import LocalBackend
from workers.contract import State, is_terminal

pytestmark = [pytest.mark.drill, pytest.mark.e2e]

CAPACITY = 3
RUNS = 30
# Kill both after this many runs have ended (the first while the burst is still being posted).
KILL_AFTER_ENDED = (0, 9, 18)
DOWN_S = 1.5


class SmallPoolBackend(LocalBackend):
    """The local backend with a pool of capacity 3."""

    def write_pipelines(self, directory: Path) -> None:
        super().write_pipelines(directory)
        (directory / "pools" / "local.yaml").write_text(
            f"name: local\ntarget: local\ncapacity: {CAPACITY}\nqueued_limit: 3s\n"
            "settings: {}\n")

    def jobs_alive(self) -> set[str]:
        """The process ids whose job (the job's own process, not its runner) is alive now."""
        root = f"{self.work_root}/"
        alive = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                cwd = os.readlink(entry / "cwd")
                if (entry / "stat").read_text().split(") ")[1][0] == "Z":
                    continue  # a zombie has ended
            except OSError:
                continue
            if b"DRILL_LEDGER" in cmdline and cwd.startswith(root):
                alive.add(cwd[len(root):].split("/")[0])
        return alive


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant; one that ends as another starts does not
    overlap it."""
    moments = sorted(itertools.chain.from_iterable(((start, 1), (end, -1))
                                                   for start, end in intervals))
    open_now = most = 0
    for _, step in moments:
        open_now += step
        most = max(most, open_now)
    return most


def restart(service) -> None:
    """Start a killed service again; returns once it says it is ready a new time."""
    readies = service.output().count(" ready.")
    service.start()
    service.wait_for(lambda: service.output().count(" ready.") > readies, 60,
                     f"{service.name} ready again")


def test_control_consumer_and_beat_killed_while_a_burst_is_admitted(drill_for, tmp_path,
                                                                   record):
    backend = SmallPoolBackend(tmp_path)
    drill = drill_for(backend)
    drill.start()

    on_host: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # the target's own answer: job processes alive, every 20 ms
        while not stop.is_set():
            on_host.append(len(backend.jobs_alive()))
            stop.wait(0.02)

    ids: list[str] = []
    poster = threading.Thread(target=lambda: ids.extend(drill.submit(RUNS, seconds=1)))
    watcher = threading.Thread(target=watch)
    watcher.start()
    kills = 0
    try:
        poster.start()
        for ended in KILL_AFTER_ENDED:
            if ended:
                wait_for(lambda ended=ended: len(ids) == RUNS and sum(
                    is_terminal(s) for s in (drill.states(ids) or {}).values()) >= ended,
                    120, f"{ended} runs ended")
            else:
                wait_for(lambda: drill.pool()["running"] > 0, 30, "admission to start")
            drill.services["control"].kill(signal.SIGKILL)
            drill.services["beat"].kill(signal.SIGKILL)
            kills += 1
            time.sleep(DOWN_S)
            restart(drill.services["control"])
            drill.services["beat"].start()
        poster.join()
        summary = drill.check({pid: Expect(State.SUCCEEDED, 0) for pid in ids}, timeout=180)
    finally:
        stop.set()
        watcher.join()
        poster.join()

    slots, on_target = [], []
    for pid in ids:
        events = drill.api.get(f"/api/processes/{pid}/events/")
        times = {e["to"]: datetime.fromisoformat(e["time"]) for e in events}
        on_target.append((times[State.SUBMITTED], times[State.SUCCEEDED]))
        process = drill.api.get(f"/api/processes/{pid}/")
        slots.append((datetime.fromisoformat(process["admitted_at"]),
                      datetime.fromisoformat(process["finished_at"])))
    figures = {"slots": most_at_once(slots), "target": most_at_once(on_target),
               "host": max(on_host)}
    assert figures["slots"] <= CAPACITY, slots
    assert figures["target"] == CAPACITY, on_target  # the pool was used, never past it
    assert figures["host"] <= CAPACITY, on_host
    summary["fault"] = (f"control consumer and beat SIGKILLed {kills} times while a burst of "
                        f"{RUNS} was admitted on a pool of capacity {CAPACITY}; at most "
                        f"{figures['slots']} slots held, {figures['target']} runs on the "
                        f"target (database) and {figures['host']} job processes on the host "
                        f"({len(on_host)} samples) at once")
    record(summary)
