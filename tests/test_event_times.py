"""Event times are when things happened: a worker's observation, applied late (the control
consumer was down), is recorded at the time the worker saw it, within what clocks can prove."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from apps.processes.events import events_apply
from apps.processes.models import Process
from apps.processes.services import process_create, process_stop
from tests.worker_reports import LOCAL_WORKER, signed_events
from workers.contract import Event, PollItem, State
from workers.executors.base import Executor, LogChunk, Status

pytestmark = pytest.mark.django_db

# Slack for the time between "now" in a test and "now" in the control plane.
CLOCK_SLACK = timedelta(seconds=5)


@pytest.fixture
def process(pipelines, django_user_model):
    owner = django_user_model.objects.create(username="someone")
    created, _ = process_create(pipeline="sleep", used_config={"seconds": 1}, owner=owner)
    return created


@pytest.fixture
def process_of_an_hour_ago(process):
    """A process created an hour ago: room for events observed in the past."""
    hour_ago = timezone.now() - timedelta(hours=1)
    Process.objects.filter(pk=process.pk).update(created_at=hour_ago)
    process.events.update(at=hour_ago)
    process.refresh_from_db()
    return process


def apply(process, seconds_ago: float, **fields):
    """An event the worker holding the process saw ``seconds_ago``."""
    if fields.get("handle"):
        fields.setdefault("host", LOCAL_WORKER.host)
    events_apply([Event(process_id=str(process.pk), source="test",
                        at=time.time() - seconds_ago, **fields)], LOCAL_WORKER)
    process.refresh_from_db()
    return process


def times(process):
    return {e.to_state: e.at for e in process.events.all()}


def close_to(value, expected):
    return abs(value - expected) < CLOCK_SLACK


def test_an_event_applied_late_records_when_it_happened(process_of_an_hour_ago):
    """The consumer was down: SUBMITTED, RUNNING and SUCCEEDED seen 100, 90 and 30 s ago are
    applied now, and the history and the stamps say when they happened."""
    process = process_of_an_hour_ago
    now = timezone.now()
    apply(process, 100, state="SUBMITTED", handle="h1")
    apply(process, 90, state="RUNNING")
    apply(process, 30, state="SUCCEEDED", exit_code=0)
    at = times(process)
    assert close_to(at["SUBMITTED"], now - timedelta(seconds=100))
    assert close_to(at["RUNNING"], now - timedelta(seconds=90))
    assert close_to(at["SUCCEEDED"], now - timedelta(seconds=30))
    assert process.submitted_at == at["SUBMITTED"]
    assert process.started_at == at["RUNNING"]
    assert process.finished_at == at["SUCCEEDED"]
    for event in process.events.exclude(to_state="PENDING"):
        assert event.recorded_at > event.at  # applied later than it happened


def test_the_queued_step_a_worker_implies_takes_its_time(process_of_an_hour_ago):
    """A worker's SUBMITTED applied before the publish was recorded: QUEUED happened by then."""
    process = process_of_an_hour_ago
    assert process.state == State.PENDING
    apply(process, 90, state="SUBMITTED", handle="h1")
    at = times(process)
    assert at["QUEUED"] == at["SUBMITTED"] == process.queued_at == process.submitted_at
    assert close_to(at["SUBMITTED"], timezone.now() - timedelta(seconds=90))


def test_a_worker_clock_ahead_is_clamped_to_now(process):
    before = timezone.now()
    apply(process, -3600, state="RUNNING", handle="h1")  # a clock an hour fast
    after = timezone.now()
    assert before <= process.started_at <= after
    assert before <= times(process)["RUNNING"] <= after


def test_an_event_older_than_the_previous_transition_keeps_the_history_in_order(
        process_of_an_hour_ago):
    """A slow clock, or a worker that reports a state the control plane already passed:
    nothing lands before what the history already holds."""
    process = process_of_an_hour_ago
    apply(process, 10, state="SUBMITTED", handle="h1")
    apply(process, 600, state="RUNNING")  # "ten minutes ago": before SUBMITTED was recorded
    events = list(process.events.all())
    assert [e.to_state for e in events] == ["PENDING", "QUEUED", "SUBMITTED", "RUNNING"]
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert process.started_at == times(process)["SUBMITTED"]


def test_an_event_from_before_the_process_existed_is_raised_to_its_creation(process):
    apply(process, 86400 * 365, state="RUNNING", handle="h1")  # a clock a year behind
    assert process.started_at >= process.created_at
    assert times(process)["RUNNING"] >= times(process)["QUEUED"]


@pytest.mark.parametrize("nonsense", [0, -5, float("nan"), float("inf")])
def test_an_event_time_that_is_no_time_is_recorded_as_applied(process, nonsense):
    before = timezone.now()
    events_apply([Event(process_id=str(process.pk), source="test", state="RUNNING",
                        handle="h1", host=LOCAL_WORKER.host, at=nonsense)], LOCAL_WORKER)
    process.refresh_from_db()
    assert before <= process.started_at <= timezone.now()


def test_a_duplicate_changes_nothing(process_of_an_hour_ago):
    process = process_of_an_hour_ago
    apply(process, 90, state="RUNNING", handle="h1")
    apply(process, 30, state="SUCCEEDED", exit_code=0)
    history = list(process.events.values_list("to_state", "at", "recorded_at"))
    stamps = (process.started_at, process.finished_at)
    apply(process, 90, state="RUNNING", handle="h1")
    apply(process, 5, state="SUCCEEDED", exit_code=0)
    assert list(process.events.values_list("to_state", "at", "recorded_at")) == history
    assert (process.started_at, process.finished_at) == stamps


def test_events_requeued_in_a_database_outage_keep_when_they_happened(
        process_of_an_hour_ago, monkeypatch):
    from celery.exceptions import Reject
    from django.db import OperationalError

    from apps.processes import tasks

    def database_down(envelope):
        raise OperationalError("server closed the connection unexpectedly")

    process = process_of_an_hour_ago
    message = signed_events([Event(process_id=str(process.pk), source="test", state="RUNNING",
                                   handle="h1", host=LOCAL_WORKER.host,
                                   at=time.time() - 90)])
    monkeypatch.setattr(tasks, "DB_REQUEUE_DELAY_S", 0)
    with monkeypatch.context() as outage:
        outage.setattr(tasks, "events_receive", database_down)
        with pytest.raises(Reject):
            tasks.apply_events(message)
    tasks.apply_events(message)  # the same message, delivered again once the database is back
    process.refresh_from_db()
    assert close_to(process.started_at, timezone.now() - timedelta(seconds=90))


def test_the_control_planes_own_transitions_happen_now(process_of_an_hour_ago, monkeypatch):
    monkeypatch.setattr("apps.processes.services.messaging.send_cancel", lambda p: None)
    process = process_of_an_hour_ago
    apply(process, 90, state="RUNNING", handle="h1")
    before = timezone.now()
    process_stop(process)
    apply(process, 600, state="STOPPED", exit_code=143)  # its clock is behind
    at = times(process)
    assert before <= at["STOPPING"] <= timezone.now()
    assert at["STOPPED"] == at["STOPPING"]  # kept in order, not before the stop
    assert process.finished_at == at["STOPPED"]


def test_the_events_api_shows_when_it_happened_and_when_it_was_recorded(make_client,
                                                                         pipelines):
    app, api = make_client("times")
    process, _ = process_create(pipeline="sleep", used_config={"seconds": 1},
                                application=app, team=app.team_memberships.get().team)
    hour_ago = timezone.now() - timedelta(hours=1)
    Process.objects.filter(pk=process.pk).update(created_at=hour_ago)
    process.events.update(at=hour_ago)
    apply(process, 90, state="RUNNING", handle="h1")
    events = api.get(f"/api/processes/{process.pk}/events/").json()
    running = next(e for e in events if e["to"] == "RUNNING")
    happened = datetime.fromisoformat(running["time"])
    recorded = datetime.fromisoformat(running["recorded_at"])
    assert close_to(recorded - happened, timedelta(seconds=90))


# --- the worker side: an event carries the time the target answered ------------------------


class SlowLogTarget(Executor):
    """Answers every status at once, then takes ten (fake) seconds per log read."""

    target = "fake"

    def __init__(self, clock):
        super().__init__("fake-pool")
        self.clock = clock

    def find(self, spec):
        return None

    def start(self, spec):
        raise AssertionError("not used")

    def statuses(self, items):
        return {item.handle: Status(state=State.RUNNING) for item in items}

    def cancel(self, handle):
        pass

    def read_log(self, item, limit):
        self.clock[0] += 10
        return LogChunk(b"")


def test_a_poll_stamps_every_event_with_the_time_the_target_answered(monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    items = [PollItem(process_id=f"p{i}", handle=f"h{i}") for i in range(5)]
    events = SlowLogTarget(clock).poll(items)
    assert [e.at for e in events] == [1_000_000.0] * 5  # not 40 s later for the last one
