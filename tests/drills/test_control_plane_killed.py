"""Drill 5: SIGKILL the control consumer and the beat while events are in flight, restart them.

Workers keep running jobs and sending events while nothing applies them: the events wait in
the ``control`` queue (those the consumer held unacknowledged are delivered again), processes
posted meanwhile are committed PENDING and wait for the relay (it runs in the control
consumer), and once the consumer and beat are back every process reaches its end. The
history of a job that started while they were down says when it started, not when the
consumer came back.
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

    during = drill.submit(6, seconds=1)  # the web still takes runs: committed, not published
    time.sleep(4)  # jobs end while nobody applies their events
    assert set(drill.states(during).values()) == {State.PENDING}

    restarted = datetime.now(UTC)
    drill.services["control"].start()
    drill.services["beat"].start()

    record(drill.check({pid: Expect(State.SUCCEEDED, 0) for pid in first + during}))
    started_meanwhile = 0
    for pid in first:  # a job submitted while the consumer was down: the history says then
        for event in drill.api.get(f"/api/processes/{pid}/events/"):
            if event["to"] not in (State.SUBMITTED, State.RUNNING):
                continue
            at = datetime.fromisoformat(event["time"])
            recorded = datetime.fromisoformat(event["recorded_at"])
            assert at <= recorded, f"{pid}: {event}"
            started_meanwhile += at < restarted <= recorded
    assert started_meanwhile, "no job started while the consumer was down"
