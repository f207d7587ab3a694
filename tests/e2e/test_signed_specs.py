"""Job specs published by hand to a pool's queue on the real broker, as an attacker with
broker access would: unsigned, signed with another key, signed for another pool, replayed
past their bound or with their time changed. The real worker of the local pool runs none of
them and logs each refusal, while a run through the API still succeeds."""

from __future__ import annotations

import time
import uuid

import pytest

from orchestration.celery import app
from tests.e2e.client import post_process, wait_for_end
from tests.e2e.stack import wait_until
from workers.contract import TASK_CANCEL, TASK_SUBMIT, JobSpec, State, pool_queue
from workers.signing import sign

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def forged(tmp_path, case: str, pool: str = "local") -> dict:
    return JobSpec(process_id=str(uuid.uuid4()), pipeline="hello", version=1, target="local",
                   pool=pool, command=["sh", "-c", f"touch {tmp_path}/pwned-{case}"]).to_dict()


def test_forged_and_replayed_specs_run_nothing(api, local_worker, tmp_path):
    long_ago = time.time() - 3 * 86400
    tampered = sign("spec", "local", forged(tmp_path, "tampered"), issued_at=long_ago)
    tampered["issued_at"] = time.time()
    messages = {
        "unsigned": forged(tmp_path, "unsigned"),
        "wrong key": sign("spec", "local", forged(tmp_path, "key"), key=b"an attacker's key"),
        "other pool": sign("spec", "docker", forged(tmp_path, "pool", pool="docker")),
        "replayed": sign("spec", "local", forged(tmp_path, "replay"), issued_at=long_ago),
        "time changed": tampered,
    }
    for message in messages.values():
        app.send_task(TASK_SUBMIT, args=[message], queue=pool_queue("local"))
    # An unsigned cancel for a process the worker might hold does nothing either.
    app.send_task(TASK_CANCEL, args=[{"pool": "local", "target": "local", "host": None,
                                      "items": [{"process_id": "x", "handle": "1"}]}],
                  queue=pool_queue("local"))

    # Another pool's spec is signed with that pool's key, which this worker does not hold.
    reasons = ["unsigned", "bad signature", "bad signature", "stale: issued", "bad signature",
               "refused a cancel message"]
    wait_until(lambda: all(local_worker.output().count(r) >= reasons.count(r) for r in reasons),
               timeout=30, what="the worker's refusals in its log")
    # And a normal run, published by the control plane, still runs.
    pid = post_process(api, "hello", {"name": "Ada"})
    assert wait_for_end(pid).state == State.SUCCEEDED
    time.sleep(2)  # anything a forged spec might have started has had time to touch its file
    assert list(tmp_path.iterdir()) == []
    assert local_worker.output().count("refused a spec message") >= len(messages)
