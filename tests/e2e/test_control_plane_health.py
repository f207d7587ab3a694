"""GET /api/health/ sees the control plane's own processes: a SIGKILLed control consumer makes
it 503 naming the consumer within its heartbeat bound, while the beat (which records its
heartbeat without the consumer) stays up; a restarted consumer brings it back to 200."""

from __future__ import annotations

import signal

import pytest

from tests.e2e.stack import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

HEALTH = "/api/health/"
# The stack's heartbeat interval is 1 s (stack_env): a part silent for 3 s is down.
BOUND_S = 3


def test_a_killed_control_consumer_is_named_by_health_until_it_restarts(
        client, control_plane, settings):
    settings.WORKER_TIMEOUT_S = BOUND_S
    consumer, beat = control_plane

    def healthy():
        return client.get(HEALTH).status_code == 200

    def unavailable_report():
        response = client.get(HEALTH)
        return response.status_code == 503 and response.json()

    wait_until(healthy, timeout=60, what="health 200: consumer and beat up")

    consumer.kill(signal.SIGKILL)
    try:
        # The bound, plus slack for the last heartbeat in flight and this test's polling.
        body = wait_until(unavailable_report, timeout=BOUND_S + 5,
                          what="health 503 once the control consumer is killed")
        assert body["down"] == ["control"], body
        assert body["control"]["ok"] is False
        assert body["beat"]["ok"] is True
        assert body["database"]["ok"]
        assert body["broker"]["ok"]
    finally:
        consumer.start()  # the session's other tests need it
    assert beat.alive()
    wait_until(healthy, timeout=60, what="health 200 after the restart")
