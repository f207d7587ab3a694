"""Webhooks and callbacks, as a receiver on 127.0.0.1 sees them: a team admin registers a
receiver, a POST may name its own `callback_url`; each end (or every transition) is recorded
as a delivery in the transition's transaction and sent by the beat's housekeeping, signed, and
retried with backoff while the receiver is away."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.utils import timezone

from apps.processes.models import Process
from apps.processes.transitions import transition
from apps.teams.models import TeamClient
from apps.teams.roles import Role
from apps.webhooks.models import Delivery
from apps.webhooks.services import deliveries_send
from apps.webhooks.signing import SIGNATURE_HEADER, signature_valid
from workers.contract import State

pytestmark = pytest.mark.django_db


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps what it is sent and answers ``status``."""

    def __init__(self, status: int = 200, delay_s: float = 0):
        self.status, self.received, self.delay_s = status, [], delay_s
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(owner.delay_s)  # a slow receiver
                owner.received.append((dict(self.headers), body))
                self.send_response(owner.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on this machine
    made = Receiver()
    yield made
    made.close()


@pytest.fixture
def team_admin(make_client, pipelines):
    """A client that is admin of its team (and so submits for it too)."""
    app, api = make_client("lab")
    TeamClient.objects.filter(application=app).update(role=Role.ADMIN)
    return api


def post_run(api, **extra) -> dict:
    answer = api.post("/api/processes/", {"pipeline": "hello", **extra}, format="json")
    assert answer.status_code == 201, answer.content
    return answer.json()


def end(process_id, state=State.SUCCEEDED):
    for step in (State.QUEUED, State.SUBMITTED, State.RUNNING, state):
        transition(process_id, step, source="worker:test")


def test_a_team_admin_registers_a_receiver_and_gets_each_end_signed(team_admin, receiver):
    made = team_admin.post("/api/webhooks/", {"url": receiver.url}, format="json")
    assert made.status_code == 201, made.content
    secret = made.json()["secret"]
    assert "secret" not in team_admin.get(f"/api/webhooks/{made.json()['id']}/").json()
    process = post_run(team_admin)

    end(process["id"], State.FAILED)
    assert receiver.received == []  # the event path sends nothing itself
    assert deliveries_send() == 1

    (headers, body), = receiver.received
    assert signature_valid(secret, body, headers[SIGNATURE_HEADER], time.time())
    assert not signature_valid("another-secret", body, headers[SIGNATURE_HEADER], time.time())
    sent = json.loads(body)
    assert sent["event"] == "process.ended"
    assert sent["to_state"] == "FAILED"
    assert sent["process"]["id"] == process["id"]
    assert sent["process"]["pipeline"] == "hello"
    listed = team_admin.get("/api/deliveries/", {"process": process["id"]}).json()["results"]
    assert [(d["state"], d["attempts"], d["last_status"], d["kind"]) for d in listed] == [
        ("delivered", 1, 200, "webhook")]
    assert deliveries_send() == 0  # delivered once, never again


def test_events_all_hears_every_transition(team_admin, receiver):
    team_admin.post("/api/webhooks/", {"url": receiver.url, "events": "all"}, format="json")
    process = post_run(team_admin)
    end(process["id"])
    deliveries_send()
    assert [json.loads(body)["to_state"] for _, body in receiver.received] == [
        "QUEUED", "SUBMITTED", "RUNNING", "SUCCEEDED"]


def test_a_callback_url_is_told_of_its_process_end_with_its_own_secret(team_admin, receiver):
    process = post_run(team_admin, callback_url=receiver.url)
    secret = process["callback_secret"]
    assert "callback_secret" not in team_admin.get(f"/api/processes/{process['id']}/").json()

    end(process["id"])
    deliveries_send()

    (headers, body), = receiver.received
    assert signature_valid(secret, body, headers[SIGNATURE_HEADER], time.time())
    assert json.loads(body)["process"]["state"] == "SUCCEEDED"


def test_a_receiver_that_is_away_is_retried_with_backoff_then_given_up(team_admin, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    away = Receiver()
    url = away.url
    away.close()  # nothing listens there now
    process = post_run(team_admin, callback_url=url)
    end(process["id"])

    assert deliveries_send() == 0
    delivery = Delivery.objects.get(process_id=process["id"])
    assert delivery.state == Delivery.PENDING
    assert delivery.attempts == 1
    assert "ConnectionError" in delivery.last_error
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=3)  # backoff
    deliveries_send()
    assert Delivery.objects.get(pk=delivery.pk).attempts == 1  # not due yet

    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now(), created_at=timezone.now() - timedelta(days=2))
    deliveries_send()
    given_up = Delivery.objects.get(pk=delivery.pk)
    assert given_up.state == Delivery.FAILED
    assert given_up.attempts == 2


@pytest.mark.django_db(transaction=True)  # the rows must be seen by the other thread's connection
def test_a_slow_receiver_holds_one_thread_for_a_round_at_most(team_admin, receiver):
    """The control consumer's threads apply events too: a round stops sending when its
    budget is spent (the rest stay due for the next one), and while one thread is in a round,
    another's returns at once."""
    receiver.delay_s = 0.4
    team_admin.post("/api/webhooks/", {"url": receiver.url}, format="json")
    for _ in range(6):
        end(post_run(team_admin)["id"])

    def a_round():
        try:
            deliveries_send(budget_s=0.5)
        finally:
            connection.close()  # this thread's own

    in_round = threading.Thread(target=a_round)
    in_round.start()
    time.sleep(0.1)
    assert deliveries_send() == 0  # another round is running in this process: none sent
    in_round.join(timeout=10)
    # Sends begin at 0 and about 0.4 s, before the 0.5 s budget runs out; none after it.
    sent = len(receiver.received)
    assert 1 <= sent <= 2
    left = Delivery.objects.filter(state=Delivery.PENDING)
    assert left.count() == 6 - sent
    assert all(d.attempts == 0 and d.next_attempt_at <= timezone.now() for d in left)
    receiver.delay_s = 0
    assert deliveries_send() == 6 - sent  # due again at once, not after the claim's lease


def test_a_callback_whose_process_was_deleted_is_never_sent_unsigned(team_admin, receiver):
    process = post_run(team_admin, callback_url=receiver.url)
    end(process["id"])
    assert team_admin.delete(f"/api/processes/{process['id']}/").status_code == 204

    assert deliveries_send() == 0
    assert receiver.received == []
    delivery = Delivery.objects.get(process_id=process["id"])
    assert delivery.state == Delivery.FAILED
    assert "callback's secret" in delivery.last_error


def test_a_receiver_answering_500_is_retried(team_admin, receiver):
    receiver.status = 500
    post = post_run(team_admin, callback_url=receiver.url)
    end(post["id"])
    deliveries_send()
    delivery = Delivery.objects.get(process_id=post["id"])
    assert (delivery.state, delivery.last_status, delivery.last_error) == (
        Delivery.PENDING, 500, "answered 500")


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://localhost/x",
                                 "http://10.1.2.3/x", "http://[::1]/x", "ftp://example.org/x"])
def test_receivers_on_local_or_private_addresses_are_refused(team_admin, url):
    made = team_admin.post("/api/webhooks/", {"url": url}, format="json")
    assert made.status_code == 400
    assert "url" in made.json()["fields"]
    run = team_admin.post("/api/processes/", {"pipeline": "hello", "callback_url": url},
                          format="json")
    assert run.status_code == 400
    assert "callback_url" in run.json()["fields"]
    assert Process.objects.count() == 0


def test_only_a_team_admin_registers_and_other_teams_see_nothing(team_admin, make_client,
                                                                 receiver):
    _, operator = make_client("other")  # an operator of a team of its own
    refused = operator.post("/api/webhooks/", {"url": receiver.url}, format="json")
    assert refused.status_code == 400
    assert "team" in refused.json()["fields"]
    hook = team_admin.post("/api/webhooks/", {"url": receiver.url}, format="json").json()
    process = post_run(team_admin)
    end(process["id"])

    assert operator.get(f"/api/webhooks/{hook['id']}/").status_code == 404
    assert operator.delete(f"/api/webhooks/{hook['id']}/").status_code == 404
    assert operator.get("/api/deliveries/").json()["results"] == []
    assert team_admin.delete(f"/api/webhooks/{hook['id']}/").status_code == 204
