"""Drill 6: every event arrives twice, batches arrive newest first, and stale news (the
submission, the first log bytes) arrives again after each process has ended.

Processes end as their jobs did (succeeded, failed with their exit code, stopped on request),
no state moves back, and no log byte is kept twice.
"""

from __future__ import annotations

import sys

import pytest

from tests.drills.harness import Expect
from workers.contract import State

pytestmark = [pytest.mark.drill, pytest.mark.e2e]


def test_events_duplicated_and_out_of_order(drill, record):
    drill.start(worker_argv=[sys.executable, "-m", "tests.drills.chaos_worker", "--pool",
                             drill.backend.pool])
    succeeding = drill.submit(14, seconds=2)
    failing = drill.submit(4, seconds=1, exit_code=3)
    stopped = drill.submit(4, seconds=120)
    drill.wait_states(stopped, {State.RUNNING})
    drill.wait_started(stopped)
    for pid in stopped:
        assert drill.api.post(f"/api/processes/{pid}/stop/")["state"] == State.STOPPING

    expected = {pid: Expect(State.SUCCEEDED, 0) for pid in succeeding}
    expected.update({pid: Expect(State.FAILED, 3) for pid in failing})
    expected.update({pid: Expect(State.STOPPED) for pid in stopped})
    record(drill.check(expected))
