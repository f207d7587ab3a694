"""The relay (apps.processes.relay): the POST commits its process PENDING and answers; a relay
round admits and publishes committed job specs a batch at a time, confirmed by the broker,
then marks them QUEUED with their events in one transaction. Nothing is sent for a rolled-back
row; a batch the broker refused, or that was confirmed and never marked (the relay killed),
is sent again by the next round. Against PostgreSQL and this vhost's RabbitMQ."""

from __future__ import annotations

import json
import select
import time

import psycopg2
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from kombu import Connection

from apps.pipelines.models import Pool
from apps.processes import messaging, relay
from apps.processes.models import Process, ProcessAttempt
from apps.processes.relay import relay_round
from apps.processes.services import process_create
from apps.processes.spec_batches import SpecPublisher
from orchestration.celery import app
from workers.contract import State, pool_queue
from workers.signing import verify

# Each test in one transaction of its own: its rows are invisible to any live relay of the
# same session (the e2e tests' control consumer admits and publishes every committed
# PENDING row it sees). Two relays at once: test_admission's concurrent admitters.
pytestmark = pytest.mark.django_db

PROCESSES = "/api/processes/"


@pytest.fixture
def queue(pipelines, monkeypatch):
    """The job specs sent for the ``local`` pool, read back (and emptied before and after),
    from a queue of this test's own: a live worker of the pool (the e2e tests' own, in the
    same session and vhost) would otherwise take them first."""
    name = f"{pool_queue('local')}.relay-test"
    monkeypatch.setattr(messaging, "pool_queue", lambda pool: name)
    with Connection(app.conf.broker_url) as conn:
        channel = conn.channel()
        channel.queue_declare(queue=name, durable=True, auto_delete=False)
        channel.queue_purge(name)

        def taken(whole: bool = False) -> list:
            """The process ids of the specs sent (``whole``: the specs)."""
            specs = []
            while (message := channel.basic_get(name, no_ack=True)) is not None:
                envelope = json.loads(message.body)[0][0]  # Celery's: (args, kwargs, embed)
                specs.append(verify(envelope, "spec", "local"))
            return specs if whole else [spec["process_id"] for spec in specs]

        yield taken
        channel.queue_purge(name)


def test_the_post_answers_pending_and_a_round_publishes_and_marks_it_queued(api, queue):
    answer = api.post(PROCESSES, {"pipeline": "hello"}, format="json")
    assert answer.status_code == 201, answer.content
    assert answer.json()["state"] == State.PENDING
    pid = answer.json()["id"]
    assert queue() == []  # nothing of the broker in the request

    assert relay_round() == 1
    assert queue() == [pid]
    process = Process.objects.get(pk=pid)
    assert process.state == State.QUEUED
    assert process.queued_at
    assert process.spec_sent_at
    history = list(process.events.order_by("at").values_list("from_state", "to_state"))
    assert history == [("", State.PENDING), (State.PENDING, State.QUEUED)]
    assert ProcessAttempt.objects.get(process=process, number=1).state == State.QUEUED
    assert relay_round() == 0
    assert queue() == []


def test_a_round_publishes_every_admitted_one_in_batches_of_the_setting(api, queue, settings):
    settings.RELAY_BATCH = 3
    ids = [api.post(PROCESSES, {"pipeline": "hello"}, format="json").json()["id"]
           for _ in range(4)]  # the local pool's capacity: all four are admitted
    assert relay_round() == 4
    assert sorted(queue()) == sorted(ids)
    assert set(Process.objects.filter(pk__in=ids).values_list("state", flat=True)) == {
        State.QUEUED}


def test_a_batch_reads_its_datasets_once_however_many_processes_it_holds(
        api, queue, settings, tmp_path):
    """The specs of a batch carry each process's staged inputs; reading them costs the
    round the same queries for 2 processes as for 8 (a sweep publishes thousands)."""
    settings.DATA_STORAGE_URL = f"file://{tmp_path}/storage"
    Pool.objects.filter(name="local").update(capacity=100)
    dataset = api.post("/api/datasets/", {"file": SimpleUploadedFile("in.txt", b"words")},
                       format="multipart").json()["id"]

    def round_of(count: int) -> int:
        for _ in range(count):
            answer = api.post(PROCESSES, {"pipeline": "checksum",
                                          "used_config": {"input": dataset}}, format="json")
            assert answer.status_code == 201, answer.content
        with CaptureQueriesContext(connection) as queries:
            assert relay_round() == count
        return len(queries)

    assert round_of(2) == round_of(8)
    specs = queue(whole=True)
    assert len(specs) == 10
    assert {spec["inputs"][0]["dataset"] for spec in specs} == {dataset}


def test_a_rolled_back_create_is_never_published(queue, pipelines):
    def create_then_fail():
        with transaction.atomic():
            process_create(pipeline="hello", used_config={})
            raise RuntimeError("the caller's transaction fails after the create")

    with pytest.raises(RuntimeError):
        create_then_fail()
    assert relay_round() == 0
    assert queue() == []
    assert not Process.objects.exists()


def test_a_refused_batch_stays_pending_and_the_next_round_sends_it(queue, pipelines,
                                                                   monkeypatch):
    process, _ = process_create(pipeline="hello", used_config={})

    def refuse(self, messages):
        raise ConnectionError("the broker is away")

    with monkeypatch.context() as patched:
        patched.setattr(SpecPublisher, "publish", refuse)
        assert relay_round() == 0
    process.refresh_from_db()
    assert process.state == State.PENDING
    assert process.admitted_at is not None
    assert relay_round() == 1
    assert queue() == [str(process.pk)]


def test_a_batch_confirmed_and_never_marked_is_sent_again(queue, pipelines, monkeypatch):
    """The relay killed between the broker's confirms and the mark: the mark's transaction
    never commits, the processes stay PENDING, the next round sends their specs again (the
    worker's find-before-start makes the second copy harmless)."""
    process, _ = process_create(pipeline="hello", used_config={})

    def killed(batch):
        raise SystemExit("killed after the confirms")

    with monkeypatch.context() as patched:
        patched.setattr(relay, "batch_confirmed", killed)
        with pytest.raises(SystemExit):
            relay_round()
    process.refresh_from_db()
    assert process.state == State.PENDING
    assert relay_round() == 1
    assert queue() == [str(process.pk)] * 2  # the confirmed copy and the one sent again
    process.refresh_from_db()
    assert process.state == State.QUEUED
    assert process.events.filter(to_state=State.QUEUED).count() == 1


@pytest.mark.parametrize("sender", ["relay", "resend"])
def test_a_spec_leaves_its_queue_once_a_worker_would_refuse_it_as_stale(
        queue, pipelines, monkeypatch, sender):
    """A pool down for days does not pile up copies of its waiting runs' specs: RabbitMQ drops
    each copy when its signature's age would be refused (here 2 s), from the relay's batch
    and from the resend alike."""
    monkeypatch.setenv("ORCH_SIGNATURE_MAX_AGE_S", "2")
    process, _ = process_create(pipeline="hello", used_config={})
    if sender == "relay":
        assert relay_round() == 1
    else:
        messaging.send_job_spec(process)
    time.sleep(2.5)
    assert queue() == []  # the broker let it expire unread (test_the_post_answers...: kept)


@pytest.mark.django_db(transaction=True)
def test_wake_is_heard_at_commit_and_never_for_a_rollback():
    listener = psycopg2.connect(_dsn())
    listener.autocommit = True
    try:
        with listener.cursor() as cursor:
            cursor.execute(f"LISTEN {relay.CHANNEL}")
        with pytest.raises(RuntimeError):
            _wake_then_fail()
        assert not _heard(listener, 0.3)
        with transaction.atomic():
            relay.wake()
            assert not _heard(listener, 0.1)  # not before the commit
        assert _heard(listener, 5)
    finally:
        listener.close()


def _wake_then_fail() -> None:
    with transaction.atomic():
        relay.wake()
        raise RuntimeError("rolled back")


def _dsn() -> str:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return " ".join(f"{k}={v}" for k, v in params.items() if v not in (None, ""))


def _heard(listener, timeout: float) -> bool:
    select.select([listener], [], [], timeout)
    listener.poll()
    heard = bool(listener.notifies)
    listener.notifies.clear()
    return heard
