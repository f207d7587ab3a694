"""Drill 2: SIGKILL the worker while its jobs run, then start it again.

While the pool has no worker it is shown down, its running processes wait (they neither fail
nor go LOST), new processes wait QUEUED and are flagged as waiting too long after the pool's
limit, and a stop asked meanwhile is carried out once the worker is back.
"""

from __future__ import annotations

import signal

import pytest

from tests.drills.harness import Expect
from tests.drills.infra import wait_for
from workers.contract import State

pytestmark = [pytest.mark.drill, pytest.mark.e2e]


def test_worker_killed_while_jobs_run(drill, record):
    drill.start()
    running = drill.submit(14, seconds=6)
    failing = drill.submit(2, seconds=6, exit_code=3)
    to_stop = drill.submit(3, seconds=120)
    drill.wait_states(running + failing + to_stop, {State.RUNNING})
    drill.wait_started(to_stop)

    drill.services["worker"].kill(signal.SIGKILL)

    pool = drill.wait_pool("down")
    assert pool["workers"] == []
    for pid in to_stop:  # asked while no worker can carry it out
        assert drill.api.post(f"/api/processes/{pid}/stop/")["state"] == State.STOPPING
    waiting = drill.submit(3, seconds=1)
    drill.wait_states(waiting, {State.QUEUED})
    wait_for(lambda: all(drill.api.get(f"/api/processes/{pid}/")["waiting_too_long"]
                         for pid in waiting), 30, "QUEUED processes flagged as waiting too long")
    assert drill.pool()["waiting_too_long"] == len(waiting)
    states = drill.states(running + failing + to_stop)
    assert set(states.values()) <= {State.RUNNING, State.STOPPING, State.SUCCEEDED,
                                    State.FAILED}, states

    drill.services["worker"].start()

    expected = {pid: Expect(State.SUCCEEDED, 0) for pid in running + waiting}
    expected.update({pid: Expect(State.FAILED, 3) for pid in failing})
    expected.update({pid: Expect(State.STOPPED) for pid in to_stop})
    record(drill.check(expected))
