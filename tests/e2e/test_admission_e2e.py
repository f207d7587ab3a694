"""Admission end to end (issue 18): a pool's capacity holds on the real stack. The local pool
with capacity 2, six runs posted at once through the API: RabbitMQ, the control consumer
(which admits the next run as each end is applied), the beat and a real worker run them, two
at a time, and all six succeed."""

from __future__ import annotations

import itertools
import os
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from apps.pipelines.models import Pool
from apps.pipelines.services import pipelines_load
from apps.processes.models import Process
from tests.e2e import stack
from tests.e2e.client import PROCESSES, post_process, wait_for_end
from tests.e2e.stack import wait_until
from workers.contract import State, is_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

CAPACITY = 2
RUNS = 6
LOCAL_POOL = f"""
name: local
target: local
capacity: {CAPACITY}
queued_limit: 10m
settings: {{}}
"""


@pytest.fixture
def pool_of_two(api, client, local_worker, tmp_path):
    """The shipped pipelines with the local pool's capacity at 2, loaded once the control
    consumer has loaded the shipped ones at its start (a live worker on the health page is a
    heartbeat that consumer applied)."""
    wait_until(lambda: client.get("/api/health/").json()["pools"].get("local", {}).get("workers"),
               what="the control consumer and a worker of the local pool")
    folder = stack.pipelines_with(tmp_path / "pipelines", {})
    (folder / "pools" / "local.yaml").write_text(LOCAL_POOL.lstrip())
    # The consumer loads the shipped files (capacity 4) once it is ready, which can come a
    # moment after its first heartbeats: load ours until it has held for 3 s.
    held_since: list[float] = []

    def ours_held() -> bool:
        if Pool.objects.get(name="local").capacity != CAPACITY:
            report = pipelines_load(folder)
            assert not report.errors, report.errors
            held_since.clear()
        held_since.append(time.monotonic())
        return held_since[-1] - held_since[0] >= 3

    wait_until(ours_held, what=f"the local pool's capacity at {CAPACITY}")


def job_running(work_root: str, pid: str) -> bool:
    """Whether the job's detached runner is alive on this host: the target's own answer."""
    pid_file = Path(work_root) / pid / "pid"
    try:
        runner = int(pid_file.read_text().split()[0])
        # A runner works in its run dir (the worker's starter forked it).
        return os.readlink(f"/proc/{runner}/cwd") == os.path.realpath(Path(work_root) / pid)
    except (OSError, ValueError, IndexError):
        return False


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant; one that ends when another starts does not
    overlap it."""
    moments = sorted(itertools.chain.from_iterable(((start, 1), (end, -1))
                                                   for start, end in intervals),
                     key=lambda m: (m[0], m[1]))
    open_now = most = 0
    for _, step in moments:
        open_now += step
        most = max(most, open_now)
    return most


def test_a_pool_of_two_runs_six_posted_at_once_two_at_a_time(api, pool_of_two, work_root):
    on_target: list[int] = []
    pids: list[str] = []
    stop = threading.Event()

    def watch():  # the jobs alive on the host, and the pool's figures, every 50 ms
        while not stop.is_set():
            on_target.append(sum(job_running(work_root, pid) for pid in list(pids)))
            stop.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(RUNS):
            pids.append(post_process(api, "sleep", {"seconds": 2}))
        figures = next(p for p in api.get("/api/pools/").json() if p["name"] == "local")
        assert figures["running"] == CAPACITY
        assert figures["waiting"] == RUNS - CAPACITY
        waiting = api.get(f"{PROCESSES}{pids[-1]}/").json()
        assert waiting["waiting_for"].startswith(f"pool local at capacity {CAPACITY}/{CAPACITY}")
        ended = [wait_for_end(pid, timeout=120) for pid in pids]
    finally:
        stop.set()
        watcher.join()

    assert [p.state for p in ended] == [State.SUCCEEDED] * RUNS, [p.message for p in ended]
    intervals = []
    for pid in pids:
        events = api.get(f"{PROCESSES}{pid}/events/").json()
        assert [e["to"] for e in events] == ["PENDING", "QUEUED", "SUBMITTED", "RUNNING",
                                             "SUCCEEDED"]
        times = {e["to"]: datetime.fromisoformat(e["time"]) for e in events}
        intervals.append((times["SUBMITTED"], times["SUCCEEDED"]))
    assert most_at_once(intervals) == CAPACITY, intervals
    assert max(on_target) == CAPACITY, on_target  # the host ran two at once, never three
    assert all(is_terminal(s) for s in Process.objects.filter(pk__in=pids)
               .values_list("state", flat=True))
