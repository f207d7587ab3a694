"""Retries: which ends start another attempt, how the new one waits, how the history stays
forward-only within an attempt, and what the API says of each attempt."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from apps.pipelines.definitions import DefinitionError, parse_pipeline, parse_retry
from apps.pipelines.services import pipelines_load
from apps.processes.admission import admit
from apps.processes.events import events_apply
from apps.processes.models import Process
from apps.processes.services import process_create, process_stop
from apps.teams.models import Team
from tests.worker_reports import LOCAL_WORKER
from workers.contract import Event, State, can_move

pytestmark = pytest.mark.django_db

RETRY = {"attempts": 3, "on": ["lost", "preempted"], "exit_codes": [75], "delay_s": 0}


@pytest.fixture
def client_api(make_client):
    """(team, API client) of an operator whose team the processes below are submitted for."""
    _app, api = make_client("retrier")
    return Team.objects.get(slug="retrier"), api


@pytest.fixture
def make_process(pipelines, client_api, django_user_model):
    owner = django_user_model.objects.create(username="someone")

    def make(retry=RETRY):
        process, _ = process_create(pipeline="sleep", used_config={"seconds": 1}, owner=owner,
                                    team=client_api[0])
        version = process.pipeline_version
        version.retry = retry
        version.save(update_fields=["retry"])
        process.refresh_from_db()
        return process

    return make


def report(process, attempt=None, **fields):
    """An event from the worker that holds the process, about ``attempt`` (its current one by
    default)."""
    if fields.get("handle"):
        fields.setdefault("host", LOCAL_WORKER.host)
    attempt = process.attempt if attempt is None else attempt
    events_apply([Event(process_id=str(process.pk), source="test", attempt=attempt, **fields)],
                 LOCAL_WORKER)
    process.refresh_from_db()
    return process


def run_to(process, end: dict, handle="h1"):
    """Admit, submit and run the current attempt, then report ``end``."""
    admit(process.pool)
    process.refresh_from_db()
    report(process, state="SUBMITTED", handle=handle)
    report(process, state="RUNNING")
    return report(process, **end)


def attempts(process):
    return list(process.attempts.values_list("number", "state", "handle", "exit_code",
                                             "reason"))


# --- the pipeline's retry: ---------------------------------------------------------------------

def test_retry_is_read_with_its_delay_in_any_spelling():
    assert parse_retry({"attempts": 3, "on": ["spot_interruption", "lost"],
                        "exit_codes": [75], "delay": "30s"}) == {
        "attempts": 3, "on": ["lost", "spot_interruption"], "exit_codes": [75], "delay_s": 30}
    assert parse_retry({"attempts": 2, "on": ["lost"], "delay": "2m"})["delay_s"] == 120
    assert parse_retry({"attempts": 2, "on": ["lost"], "delay": 45})["delay_s"] == 45
    assert parse_retry({"attempts": 2, "exit_codes": [75]})["delay_s"] == 0
    assert parse_retry(None) is None


@pytest.mark.parametrize("retry, named", [
    ({"attempts": 0, "on": ["lost"]}, "retry.attempts"),
    ({"attempts": "3", "on": ["lost"]}, "retry.attempts"),
    ({"attempts": 3, "on": ["preemption"]}, "retry.on"),
    ({"attempts": 3, "exit_codes": [0]}, "retry.exit_codes"),
    ({"attempts": 3, "exit_codes": ["75"]}, "retry.exit_codes"),
    ({"attempts": 3, "on": ["lost"], "delay": "soon"}, "retry.delay"),
    ({"attempts": 3}, "retry: name what to retry"),
    ({"attempts": 3, "on": ["lost"], "backoff": 2}, "unknown keys backoff"),
    ("always", "retry: must be a mapping"),
])
def test_a_bad_retry_is_refused_naming_the_key(retry, named):
    with pytest.raises(DefinitionError, match=named):
        parse_retry(retry)


def test_a_bad_retry_is_refused_at_load_with_the_file_name_and_a_good_one_is_kept(tmp_path):
    shutil.copytree(Path(settings.PIPELINES_DIR) / "pools", tmp_path / "pools")
    text = (Path(settings.PIPELINES_DIR) / "sleep.yaml").read_text()
    (tmp_path / "sleep.yaml").write_text(
        text + "\nretry: {attempts: 3, on: [lost, preempted], exit_codes: [75], delay: 30s}\n")
    (tmp_path / "hello.yaml").write_text(
        (Path(settings.PIPELINES_DIR) / "hello.yaml").read_text()
        + "\nretry: {attempts: 3, on: [meteor]}\n")
    report_ = pipelines_load(tmp_path)
    assert "retry.on" in report_.errors["hello.yaml"]
    assert parse_pipeline(tmp_path / "sleep.yaml").retry["delay_s"] == 30
    version = Process.pipeline_version.field.related_model.objects.get(pipeline__name="sleep")
    assert version.retry == {"attempts": 3, "on": ["lost", "preempted"], "exit_codes": [75],
                             "delay_s": 30}


# --- which ends retry ----------------------------------------------------------------------------

@pytest.mark.parametrize("end", [
    {"state": "FAILED", "exit_code": 75},
    {"state": "FAILED", "message": "preempted (Slurm PREEMPTED)", "reason": "preempted"},
])
def test_an_end_the_pipeline_names_starts_attempt_2_waiting_for_admission(make_process, end):
    process = run_to(make_process(), end)
    assert process.state == State.PENDING
    assert process.attempt == 2
    assert process.handle == ""
    assert process.exit_code is None
    assert "retry: attempt 2 of 3 after" in process.message
    # Attempt 1 ended as it happened; the retry is an event of its own, the first of attempt 2.
    events = list(process.events.values_list("from_state", "to_state", "attempt", "source"))
    assert events[-2][:3] == ("RUNNING", "FAILED", 1)
    assert events[-1] == ("FAILED", "PENDING", 2, "control")
    assert attempts(process)[0][:4] == (1, "FAILED", "h1", end.get("exit_code"))
    assert attempts(process)[1][:2] == (2, "PENDING")


@pytest.mark.parametrize("end", [
    {"state": "FAILED", "exit_code": 1},  # an exit code the pipeline does not name
    {"state": "FAILED", "reason": "node_failure"},  # a reason it does not name
    {"state": "SUCCEEDED", "exit_code": 0},
    {"state": "STOPPED", "reason": "preempted"},
])
def test_other_ends_are_final(make_process, end):
    process = run_to(make_process(), end)
    assert process.state == end["state"]
    assert process.attempt == 1
    assert [a[:2] for a in attempts(process)] == [(1, end["state"])]


def test_a_pipeline_without_retry_never_retries(make_process):
    process = run_to(make_process(retry=None), {"state": "FAILED", "reason": "preempted",
                                                "exit_code": 75})
    assert (process.state, process.attempt) == (State.FAILED, 1)


def test_a_lost_job_is_retried_when_the_pipeline_asks(make_process, settings):
    settings.LOST_GRACE_S = 0
    process = run_to(make_process(), {"missing": True, "message": "no container h1"})
    assert process.missing_since is not None  # first seen missing: not yet lost
    process = report(process, missing=True, message="no container h1")
    assert (process.state, process.attempt) == (State.PENDING, 2)
    assert attempts(process)[0] == (1, "LOST", "h1", None, "lost")
    assert "after lost" in process.message


def test_attempts_exhausted_end_with_the_reason_and_the_count(make_process):
    process = make_process()
    for number, handle in enumerate(("h1", "h2", "h3"), start=1):
        assert process.attempt == number
        process = run_to(process, {"state": "FAILED", "reason": "preempted",
                                   "message": "preempted by a job of higher priority"},
                         handle=handle)
    assert process.state == State.FAILED
    assert process.attempt == 3
    assert "preempted" in process.message
    assert "attempt 3 of 3" in process.message
    assert [a[:3] for a in attempts(process)] == [
        (1, "FAILED", "h1"), (2, "FAILED", "h2"), (3, "FAILED", "h3")]
    assert all(a[4] == "preempted" for a in attempts(process))


def test_a_stop_is_never_retried(make_process):
    process = run_to(make_process(), {"state": "RUNNING"})
    process = process_stop(process)
    assert process.state == State.STOPPING
    # The target then reports the job gone the way a preemption would: still no retry.
    process = report(process, state="FAILED", reason="preempted", exit_code=75)
    assert (process.state, process.attempt) == (State.FAILED, 1)


# --- waiting for the delay ---------------------------------------------------------------------

def test_admission_honours_the_delay_and_waiting_for_says_until_when(make_process,
                                                                       client_api):
    process = run_to(make_process({**RETRY, "delay_s": 30}), {"state": "FAILED",
                                                                "exit_code": 75})
    assert process.state == State.PENDING
    assert process.admitted_at is None
    assert process.not_before > timezone.now() + timedelta(seconds=25)
    assert admit(process.pool) == []
    body = client_api[1].get(f"/api/processes/{process.pk}/").json()
    assert body["waiting_for"].startswith("retry delay until ")
    assert "not before 30 s" in body["message"]
    queue = client_api[1].get(f"/api/pools/{process.pool}/queue/").json()
    entries = queue["results"] if isinstance(queue, dict) else queue
    (entry,) = [e for e in entries if e["id"] == str(process.pk)]
    assert entry["waiting_for"].startswith("retry delay until ")
    # Once the delay has passed, admission takes it like any waiting process.
    Process.objects.filter(pk=process.pk).update(not_before=timezone.now())
    assert admit(process.pool) == [process.pk]
    process.refresh_from_db()
    assert process.admitted_at is not None
    assert process.attempt == 2


# --- events of an earlier attempt ---------------------------------------------------------------

def test_a_late_event_of_attempt_1_changes_nothing_during_attempt_2(make_process):
    process = run_to(make_process(), {"state": "FAILED", "exit_code": 75})
    admit(process.pool)
    process = report(process, state="SUBMITTED", handle="h2")
    before = (process.state, process.handle, process.log_size, process.events.count())
    # Attempt 1's job says it succeeded after all, with output, and a worker that names no
    # attempt (an older one: it knows only the first) says the same.
    report(process, attempt=1, state="SUCCEEDED", exit_code=0, handle="h1", log="late\n",
           log_offset=0, log_end=5)
    events_apply([Event(process_id=str(process.pk), source="test", state="SUCCEEDED")],
                 LOCAL_WORKER)
    process.refresh_from_db()
    assert (process.state, process.handle, process.log_size,
            process.events.count()) == before
    # Attempt 2's own end still applies.
    process = report(process, state="SUCCEEDED", exit_code=0)
    assert process.state == State.SUCCEEDED
    assert attempts(process)[1][:3] == (2, "SUCCEEDED", "h2")


def test_history_moves_forward_within_each_attempt(make_process):
    process = run_to(make_process(), {"state": "FAILED", "exit_code": 75})
    admit(process.pool)
    process.refresh_from_db()
    process = run_to(process, {"state": "SUCCEEDED", "exit_code": 0}, handle="h2")
    by_attempt: dict[int, list[tuple[str, str]]] = {}
    for from_state, to, number in process.events.values_list("from_state", "to_state",
                                                             "attempt"):
        by_attempt.setdefault(number, []).append((from_state, to))
    assert set(by_attempt) == {1, 2}
    for moves in by_attempt.values():
        # The first move of attempt 2 is the retry (FAILED -> PENDING); every other one
        # moves forward.
        assert all(not f or can_move(f, t) for f, t in moves[1:])
    assert by_attempt[2][0] == ("FAILED", "PENDING")


def test_each_attempts_output_follows_the_last_in_the_log(make_process):
    process = make_process()
    admit(process.pool)
    process.refresh_from_db()
    report(process, state="SUBMITTED", handle="h1")
    report(process, state="RUNNING", log="one\n", log_offset=0, log_end=4)
    report(process, state="FAILED", exit_code=75)
    admit(process.pool)
    process.refresh_from_db()
    report(process, state="SUBMITTED", handle="h2")
    process = report(process, state="SUCCEEDED", exit_code=0, log="two\n", log_offset=0,
                     log_end=4)
    from apps.processes.selectors import process_log_read

    text = process_log_read(process)["text"]
    assert text.startswith("one\n")
    assert "retry: attempt 2 of 3" in text
    assert text.endswith("two\n")


# --- the API --------------------------------------------------------------------------------------

def test_the_api_lists_every_attempt(client_api, make_process):
    process = run_to(make_process(), {"state": "FAILED", "exit_code": 75})
    admit(process.pool)
    process.refresh_from_db()
    run_to(process, {"state": "SUCCEEDED", "exit_code": 0}, handle="h2")
    api = client_api[1]
    body = api.get(f"/api/processes/{process.pk}/").json()
    assert body["attempt"] == 2
    assert [(a["number"], a["state"], a["handle"], a["exit_code"]) for a in body["attempts"]] == [
        (1, "FAILED", "h1", 75), (2, "SUCCEEDED", "h2", 0)]
    assert all(a["ended_at"] for a in body["attempts"])
    assert {"message", "reason", "created_at", "submitted_at", "started_at"} <= set(
        body["attempts"][0])
    events = api.get(f"/api/processes/{process.pk}/events/").json()
    assert [e["attempt"] for e in events if e["to"] == "PENDING"] == [1, 2]


def test_a_job_of_an_earlier_attempt_that_starts_late_is_cancelled(make_process, monkeypatch):
    """A second delivery of attempt 1's job spec, late, starts a job during attempt 2: the
    control plane stops it rather than let the process run twice."""
    from apps.processes import messaging

    sent = []
    monkeypatch.setattr(messaging, "send_poll",
                        lambda request, cancel=False: sent.append((request, cancel)))
    process = run_to(make_process(), {"state": "FAILED", "exit_code": 75})
    admit(process.pool)
    process = report(process, state="SUBMITTED", handle="h2")
    report(process, attempt=1, state="SUBMITTED", handle="h1-again")
    ((request, cancel),) = sent
    assert cancel
    assert [(i.handle, i.attempt, i.stop_requested) for i in request.items] == [
        ("h1-again", 1, True)]
    process.refresh_from_db()
    assert (process.state, process.handle, process.attempt) == (State.SUBMITTED, "h2", 2)


def test_a_callback_hears_the_last_attempts_end_only(make_process, settings):
    """An attempt's end that a retry follows is not the process's end: a callback hears one
    end, the last one; a hook of every transition hears the retry as a move to PENDING."""
    from apps.webhooks.models import Delivery, Webhook
    from apps.webhooks.services import callback_register

    settings.WEBHOOK_ALLOW_PRIVATE = True
    process = make_process({**RETRY, "attempts": 2})
    callback_register(process, "http://127.0.0.1:9/end")
    Webhook.objects.create(team=process.team, url="http://127.0.0.1:9/all",
                           events=Webhook.ALL, secret="s")

    process = run_to(process, {"state": "FAILED", "exit_code": 75})
    assert process.state == State.PENDING  # retried
    process = run_to(process, {"state": "FAILED", "exit_code": 75}, handle="h2")
    assert process.state == State.FAILED  # attempts ran out

    ends = Delivery.objects.filter(url__endswith="/end")
    assert list(ends.values_list("to_state", flat=True)) == ["FAILED"]
    heard = Delivery.objects.filter(url__endswith="/all").order_by("pk")
    assert list(heard.values_list("from_state", "to_state")) == [
        ("PENDING", "QUEUED"), ("QUEUED", "SUBMITTED"), ("SUBMITTED", "RUNNING"),
        ("FAILED", "PENDING"),
        ("PENDING", "QUEUED"), ("QUEUED", "SUBMITTED"), ("SUBMITTED", "RUNNING"),
        ("RUNNING", "FAILED")]


def test_the_admin_process_page_lists_the_attempts(make_process, admin_client):
    process = run_to(make_process(), {"state": "LOST"})  # retried: attempt 2 waits
    page = admin_client.get(f"/admin/processes/process/{process.pk}/change/")
    assert page.status_code == 200
    inline = page.content.decode().split('id="attempts-group"')[1].split("</fieldset>")[0]
    rows = inline.split('class="form-row')[1:]
    assert len(rows) == 2
    assert "LOST" in rows[0]
    assert "lost" in rows[0]  # attempt 1's reason
    assert "PENDING" in rows[1]
