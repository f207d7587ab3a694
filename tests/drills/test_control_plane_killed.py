"""Drill 5: SIGKILL the control consumer and the beat while events are in flight, restart them.

Workers keep running jobs and sending events while nothing applies them: the events wait in
the ``control`` queue (those the consumer held unacknowledged are delivered again), processes
posted meanwhile wait PENDING or QUEUED, and once the consumer and beat are back every process
reaches its end. Their history says when things happened, not when the consumer came back.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime

import pytest

from tests.drills.harness import Expect
from workers.contract import State

pytestmark = [pytest.mark.drill, pytest.mark.e2e]


def test_control_consumer_and_beat_killed(drill, record):
    drill.start()
    first = drill.submit(12, seconds=3)
    drill.wait_states(first, {State.RUNNING}, count=4)  # events flowing for the rest

    drill.services["control"].kill(signal.SIGKILL)
    drill.services["beat"].kill(signal.SIGKILL)

    during = drill.submit(6, seconds=1)  # the web still takes runs; workers still start them
    time.sleep(4)  # jobs end while nobody applies their events
    assert set(drill.states(during).values()) <= {State.PENDING, State.QUEUED}

    restarted = datetime.now(UTC)
    drill.services["control"].start()
    drill.services["beat"].start()

    record(drill.check({pid: Expect(State.SUCCEEDED, 0) for pid in first + during}))
    for pid in during:  # their jobs started (the local target reports RUNNING at once) and
        # ended while the consumer was down: the history says then, not the restart
        history = {e["to"]: e for e in drill.api.get(f"/api/processes/{pid}/events/")}
        for state in (State.SUBMITTED, State.RUNNING):
            at = datetime.fromisoformat(history[state]["time"])
            recorded = datetime.fromisoformat(history[state]["recorded_at"])
            assert at < restarted <= recorded, f"{pid}: {history[state]}"
