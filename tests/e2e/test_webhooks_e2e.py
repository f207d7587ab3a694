"""A callback end to end: a run posted with a `callback_url` on 127.0.0.1 runs on the real
stack (RabbitMQ, the control consumer, the beat, a local worker), and the receiver is told of
its end, signed with the secret the POST answered, by the beat's housekeeping."""

from __future__ import annotations

import json
import time

import pytest

from apps.webhooks.signing import SIGNATURE_HEADER, signature_valid
from tests.e2e.client import PROCESSES, wait_for_end
from tests.e2e.stack import wait_until
from tests.test_webhooks import Receiver
from workers.contract import State

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_a_callback_hears_the_end_of_a_real_run(api, local_worker, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the POST is checked here, in the test process
    receiver = Receiver()
    try:
        answer = api.post(PROCESSES, {"pipeline": "hello", "used_config": {"name": "hook"},
                                      "callback_url": receiver.url}, format="json")
        assert answer.status_code == 201, answer.content
        process = answer.json()

        assert wait_for_end(process["id"], timeout=90).state == State.SUCCEEDED
        wait_until(lambda: receiver.received, timeout=30, what="the callback's delivery")
    finally:
        receiver.close()

    (headers, body), = receiver.received
    assert signature_valid(process["callback_secret"], body, headers[SIGNATURE_HEADER],
                           time.time())
    told = json.loads(body)
    assert (told["event"], told["to_state"]) == ("process.ended", "SUCCEEDED")
    assert told["process"]["exit_code"] == 0
    deliveries = api.get("/api/deliveries/", {"process": process["id"]}).json()["results"]
    assert [(d["state"], d["last_status"]) for d in deliveries] == [("delivered", 200)]
