"""Drill 3: restart RabbitMQ (the drill's own node) with jobs queued and running.

Jobs run on while the broker is away; runs posted meanwhile are committed and wait PENDING
(the API still answers); once the broker is back, the relay publishes them, every
consumer reconnects, and every process ends once, as its job did.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.drills.harness import Expect
from workers.contract import State

pytestmark = [pytest.mark.drill, pytest.mark.e2e]


def test_broker_restarted(drill, platform, record):
    drill.start()
    running = drill.submit(10, seconds=4)
    drill.wait_states(running, {State.RUNNING})
    queued = drill.submit(8, seconds=2)  # a burst: some still wait in the pool's queue

    stopping = time.monotonic()
    platform.rabbit.stop()
    down_for = time.monotonic() - stopping
    at_stop = Counter(drill.states(running + queued).values())
    assert drill.api.session.get(f"{drill.api.base}/api/health/", timeout=30).status_code == 503
    posted = drill.submit(4, seconds=1)  # committed; published when the broker is back
    assert set(drill.states(posted).values()) == {State.PENDING}
    platform.rabbit.start()
    back_after = time.monotonic() - stopping
    summary = drill.check({pid: Expect(State.SUCCEEDED, 0) for pid in running + queued + posted})
    summary["fault"] = (f"broker stopped in {down_for:.1f} s, back after "
                        f"{back_after:.1f} s; states once it was gone {dict(at_stop)}")
    record(summary)
