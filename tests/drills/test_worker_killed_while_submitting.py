"""Drill 1: SIGKILL the worker in the middle of a submission; its job specs are redelivered.

The kill lands while the worker is starting a job (its work dir is claimed, the job has no pid
yet), with more job specs waiting unacknowledged. The worker comes back at once; every job
spec it held is delivered again, and each process still runs exactly once.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.drills.harness import Expect
from workers.contract import State

pytestmark = [pytest.mark.drill, pytest.mark.e2e]


def starting(work_root) -> list[str]:
    """Work dirs claimed by a submission whose job has not started yet."""
    found = []
    for work_dir in work_root.iterdir():
        names = {p.name for p in work_dir.iterdir()} if work_dir.is_dir() else set()
        if "claim" in names and not names & {"pid", "exit_code"}:
            found.append(work_dir.name)
    return found


def test_worker_killed_while_submitting(drill, record):
    drill.start()
    worker = drill.services["worker"]
    killed_during: list[str] = []
    done = threading.Event()

    def kill_mid_submission():
        while not done.is_set():
            if caught := starting(drill.backend.work_root):
                worker.kill(signal.SIGKILL)
                killed_during.extend(caught)
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=kill_mid_submission, daemon=True)
    watcher.start()
    ids = drill.submit(24, seconds=2)
    watcher.join(timeout=30)
    done.set()
    assert killed_during, "the worker was never caught in the middle of a submission"

    worker.start()

    summary = drill.check({pid: Expect(State.SUCCEEDED, 0) for pid in ids})
    summary["fault"] = f"killed while starting {len(killed_during)} job(s)"
    record(summary)
