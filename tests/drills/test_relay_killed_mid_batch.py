"""Drill 12: SIGKILL the relay between the broker's confirms of a batch and its mark.

200 runs are posted while the control consumer (the relay's process) is down: each POST
commits its process PENDING and answers. The consumer comes back as
``tests.drills.stalling_relay``, the real one whose relay stops for good once a batch of job
specs is confirmed by the broker and before it is marked QUEUED, one batch after a first one
went through whole; it gets SIGKILL there. The real consumer is started again.

Every process must end SUCCEEDED with exactly one job on the target: the batch that was
confirmed but never marked is published again by the next relay round, and the worker's
find-before-start turns each second copy into the job it already started; none of the 200 is
lost, none runs twice, and every history goes PENDING -> QUEUED -> ... without a gap.
"""

from __future__ import annotations

import signal
import sys
import time

import pytest

from testbed.services import wait_until
from tests.drills.harness import Expect
from workers.contract import State

pytestmark = [pytest.mark.drill, pytest.mark.e2e]

POSTED = 200
BATCH = 10  # specs per relay batch here: the kill falls on the second of several


def test_relay_killed_between_confirm_and_mark(drill, record, tmp_path):
    drill.start()
    consumer = drill.services["control"]
    consumer.kill(signal.SIGKILL)  # returns once it is gone

    ids = drill.submit(POSTED, seconds=1)
    assert set(drill.states(ids).values()) == {State.PENDING}  # committed, nothing published

    marker = tmp_path / "stalled-batch"
    stalling = drill.service(
        "control-stalling", [sys.executable, "-m", "tests.drills.stalling_relay", str(marker)],
        {**drill.env, "ORCH_RELAY_BATCH": str(BATCH)}).start()
    wait_until(marker.exists, 90, "the relay to stall after a batch's confirms", interval=0.1)
    stalled = marker.read_text().split()
    assert len(stalled) == BATCH
    states = drill.states(ids)
    # The first batch is marked; the stalled one is confirmed by the broker, still PENDING.
    assert sum(states[pid] != State.PENDING for pid in ids) >= BATCH
    assert {states[pid] for pid in stalled} == {State.PENDING}
    stalling.kill(signal.SIGKILL)
    killed_at = time.time()

    drill.services["control"] = consumer.start()
    result = drill.check({pid: Expect(State.SUCCEEDED, 0) for pid in ids}, timeout=420)
    # Each spec of the stalled batch went to the worker twice: the second found its job.
    found = (drill.run_dir / "worker.log").read_text()
    again = [pid for pid in stalled if f"process {pid} already has job" in found]
    assert again, "no spec of the stalled batch was delivered again"
    result["fault"] = (f"relay killed with a batch of {BATCH} confirmed and unmarked; "
                       f"{len(again)} of them delivered again and found their job; "
                       f"all ended {round(time.time() - killed_at)} s after the kill")
    record(result)
