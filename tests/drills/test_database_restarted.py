"""Drill 4: restart PostgreSQL (the drill's own cluster, as a crash: ``pg_ctl -m immediate``)
while jobs end and their events are in flight.

While the database is away the API says so (health 503), the control consumer cannot commit
events and hands their messages back to the queue without acknowledging them, and the poll
loop skips its rounds. Once the database is back, every event is applied and every process
ends once.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.drills.harness import Expect
from workers.contract import State

pytestmark = [pytest.mark.drill, pytest.mark.e2e]

DOWN_S = 4


def test_database_restarted(drill, platform, record):
    drill.start()
    longer = drill.submit(8, seconds=4)
    failing = drill.submit(2, seconds=1, exit_code=3)
    drill.wait_states(longer + failing, {State.RUNNING})
    burst = drill.submit(12, seconds=1)  # submitted, run and ended while the database is away

    platform.postgres.stop("immediate")
    health = requests.get(f"{drill.api.base}/api/health/", timeout=30)
    assert health.status_code == 503
    assert not health.json()["database"]["ok"]
    time.sleep(DOWN_S)  # jobs end; their events wait in the broker
    platform.postgres.start()
    assert "events not applied, the database is unavailable; requeued" in (
        drill.services["control"].output()), "no event waited for the database"

    expected = {pid: Expect(State.SUCCEEDED, 0) for pid in burst + longer}
    expected.update({pid: Expect(State.FAILED, 3) for pid in failing})
    record(drill.check(expected))
