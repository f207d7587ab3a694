"""What workers report, applied by the control plane: forward only, idempotent, logs kept
once, a vanished job declared LOST only after a grace period."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone

from apps.processes import events as events_module
from apps.processes.events import events_apply
from apps.processes.models import Process
from apps.processes.selectors import process_log_read
from apps.processes.services import process_create, process_stop
from tests.worker_reports import LOCAL_WORKER, signed_events
from workers.contract import Event, State, can_move

pytestmark = pytest.mark.django_db


@pytest.fixture
def process(pipelines, django_user_model):
    owner = django_user_model.objects.create(username="someone")
    created, _ = process_create(pipeline="sleep", used_config={"seconds": 1}, owner=owner)
    return created


def apply(process, **fields):
    """An event from the worker that holds the process (a handle: on its own host)."""
    if fields.get("handle"):
        fields.setdefault("host", LOCAL_WORKER.host)
    events_apply([Event(process_id=str(process.pk), source="test", **fields)], LOCAL_WORKER)
    process.refresh_from_db()
    return process


def history(process):
    return [(e.from_state, e.to_state) for e in process.events.all()]


def test_the_state_machine_only_moves_forward():
    path = [State.PENDING, State.QUEUED, State.SUBMITTED, State.RUNNING, State.STOPPING]
    for earlier, later in itertools.pairwise(path):
        assert can_move(earlier, later)
        assert not can_move(later, earlier)
    for end in (State.SUCCEEDED, State.FAILED, State.STOPPED, State.LOST):
        assert can_move(State.RUNNING, end)
        assert not any(can_move(end, other) for other in State)


def test_the_whole_path_is_recorded_once(process):
    apply(process, state="SUBMITTED", handle="h1", host="node1")
    apply(process, state="RUNNING")
    apply(process, state="SUCCEEDED", exit_code=0)
    assert process.state == State.SUCCEEDED
    assert process.exit_code == 0
    assert process.handle == "h1"
    assert process.host == "node1"
    assert history(process) == [("", "PENDING"), ("PENDING", "QUEUED"), ("QUEUED", "SUBMITTED"),
                                ("SUBMITTED", "RUNNING"), ("RUNNING", "SUCCEEDED")]
    assert process.started_at
    assert process.finished_at


def test_a_worker_that_answers_before_the_publish_is_recorded_leaves_no_gap(process):
    """The worker's SUBMITTED can be applied before the web process marks the spec QUEUED;
    the history still shows every step, and the late QUEUED changes nothing."""
    from apps.processes.transitions import transition

    apply(process, state="SUBMITTED", handle="h1")
    assert history(process)[1:] == [("PENDING", "QUEUED"), ("QUEUED", "SUBMITTED")]
    assert process.queued_at is not None
    assert not transition(process.pk, State.QUEUED, "control", "sent to pool local")
    assert len(history(process)) == 3


def test_duplicate_and_late_events_change_nothing(process):
    apply(process, state="SUBMITTED", handle="h1")
    apply(process, state="RUNNING")
    apply(process, state="FAILED", exit_code=3, message="exited with code 3")
    before = history(process)
    apply(process, state="RUNNING")  # a late poll answer
    apply(process, state="SUBMITTED", handle="other")  # a late duplicate submission
    apply(process, state="SUCCEEDED", exit_code=0)  # two terminal states never swap
    apply(process, state="FAILED", exit_code=3)
    assert process.state == State.FAILED
    assert process.exit_code == 3
    assert process.handle == "h1"
    assert history(process) == before


def test_events_that_would_change_nothing_take_no_lock(process, django_assert_num_queries):
    """One rule (``news_of``) decides what an event changes, on the batch's one read and
    under the lock: what it finds no news in costs no more than that read."""
    apply(process, state="RUNNING", handle="h1", log="ab", log_offset=0, log_end=2)
    apply(process, state="FAILED", exit_code=3)
    stale = [Event(process_id=str(process.pk), source="test", **fields) for fields in (
        {"state": "RUNNING"},  # late
        {"state": "SUCCEEDED", "exit_code": 0},  # two terminal states never swap
        {"log": "ab", "log_offset": 0, "log_end": 2},  # kept already
        {"handle": "h2", "host": LOCAL_WORKER.host},  # it has its handle
        {"missing": True, "message": "gone"},  # it has ended: nothing to declare lost
    )]
    with django_assert_num_queries(1):
        assert events_apply(stale, LOCAL_WORKER) == 0


def test_log_bytes_are_kept_once_in_order(process):
    apply(process, state="RUNNING", handle="h1")
    apply(process, log="hello\n", log_offset=0, log_end=6)
    apply(process, log="hello\n", log_offset=0, log_end=6)  # the same chunk twice
    apply(process, log="lo\nwörld\n", log_offset=3, log_end=13)  # overlapping
    assert process.log_size == 13
    assert process_log_read(process)["text"] == "hello\nwörld\n"
    tail = process_log_read(process, offset=6)
    assert tail["text"] == "wörld\n"
    assert tail["next_offset"] == 13


def test_a_long_log_keeps_its_head_and_its_end(process, settings):
    settings.LOG_CAP_BYTES, settings.LOG_HEAD_BYTES = 100, 20
    apply(process, state="RUNNING", handle="h1")
    offset = 0
    for i in range(20):
        line = f"line {i:02d} ........\n"
        apply(process, log=line, log_offset=offset, log_end=offset + len(line))
        offset += len(line)
    log = process_log_read(process)
    assert log["truncated"]
    assert log["skipped"] > 0
    assert log["text"].startswith("line 00")
    assert log["text"].endswith("line 19 ........\n")
    assert process.log_kept <= 100


def test_a_missing_job_is_lost_only_after_the_grace_period(process, settings):
    settings.LOST_GRACE_S = 60
    apply(process, state="RUNNING", handle="h1")
    apply(process, missing=True, message="squeue does not know h1")
    assert process.state == State.RUNNING
    assert process.missing_since is not None
    apply(process, state="RUNNING")  # seen again: the clock restarts
    assert process.missing_since is None
    apply(process, missing=True, message="gone")
    Process.objects.filter(pk=process.pk).update(
        missing_since=timezone.now() - timedelta(seconds=61))
    apply(process, missing=True, message="gone")
    assert process.state == State.LOST
    assert "gone" in process.message


def test_a_job_that_started_after_its_stop_is_cancelled(process, monkeypatch,
                                                        django_capture_on_commit_callbacks):
    cancelled = []
    monkeypatch.setattr(events_module.messaging, "send_cancel", cancelled.append)
    process_stop(process)
    process.refresh_from_db()
    assert process.state == State.STOPPED
    with django_capture_on_commit_callbacks(execute=True):
        apply(process, state="SUBMITTED", handle="late-job", host="node1")
    assert [p.pk for p in cancelled] == [process.pk]
    assert process.state == State.STOPPED


def test_stop_of_a_running_process_goes_through_stopping(process, monkeypatch):
    sent = []
    monkeypatch.setattr("apps.processes.services.messaging.send_cancel", sent.append)
    apply(process, state="SUBMITTED", handle="h1")
    apply(process, state="RUNNING")
    stopped = process_stop(process)
    assert stopped.state == State.STOPPING
    assert len(sent) == 1
    apply(process, state="RUNNING")  # a poll that crossed the stop
    assert process.state == State.STOPPING
    apply(process, state="STOPPED", exit_code=143)
    assert process.state == State.STOPPED


def test_events_the_database_refuses_go_back_to_their_queue_as_they_are(process, monkeypatch):
    """Celery's retry would publish a copy and, with the broker away too, give the message up:
    the control consumer hands the very message back instead, and publishes nothing."""
    from celery.exceptions import Reject
    from django.db import OperationalError

    from apps.processes import tasks

    def database_down(envelope):
        raise OperationalError("server closed the connection unexpectedly")

    published = []
    monkeypatch.setattr(tasks, "DB_REQUEUE_DELAY_S", 0)
    monkeypatch.setattr(tasks, "events_receive", database_down)
    monkeypatch.setattr(tasks.apply_events, "apply_async", lambda *a, **k: published.append(a))
    event = Event(process_id=str(process.pk), source="test", state=State.RUNNING)
    with pytest.raises(Reject) as rejected:
        tasks.apply_events(signed_events([event]))
    assert rejected.value.requeue is True
    assert published == []
    process.refresh_from_db()
    assert process.state != State.RUNNING


def test_the_events_of_one_message_are_applied_whole_or_not_at_all(process, monkeypatch):
    """One transaction per message: a database error on its last event undoes its first, and
    the message handed back (the consumer requeues it) applies whole, once."""
    pid = str(process.pk)
    message = [Event(process_id=pid, source="test", state="RUNNING", handle="h1",
                     host=LOCAL_WORKER.host),
               Event(process_id=pid, source="test", log="ab", log_offset=0, log_end=2)]
    keep = events_module._log_append

    def database_gone(process, event):
        raise DatabaseError("the database went away")

    monkeypatch.setattr(events_module, "_log_append", database_gone)
    with pytest.raises(DatabaseError):
        events_apply(message, LOCAL_WORKER)
    process.refresh_from_db()
    assert (process.state, process.handle) == (State.PENDING, "")
    assert history(process) == [("", State.PENDING)]

    monkeypatch.setattr(events_module, "_log_append", keep)
    assert events_apply(message, LOCAL_WORKER) == 2
    process.refresh_from_db()
    assert (process.state, process.handle, process.log_size) == (State.RUNNING, "h1", 2)
    assert events_apply(message, LOCAL_WORKER) == 0  # delivered again: nothing changes
