"""The end of a process's life through the API: DELETE of a finished process (409 while it
lives), and retention purging finished processes after ORCH_RETENTION_DAYS."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.processes.lifecycle import retention_purge
from apps.processes.models import Process, ProcessEvent, ProcessLogChunk
from workers.contract import State

pytestmark = pytest.mark.django_db


def post_run(api, name: str = "x") -> Process:
    answer = api.post("/api/processes/", {"pipeline": "hello", "used_config": {"name": name}},
                      format="json")
    assert answer.status_code == 201, answer.content
    return Process.objects.get(pk=answer.json()["id"])


def finish(process: Process, state: State = State.SUCCEEDED, ago: timedelta = timedelta(0)):
    """The process ended ``ago``, with an event and a log as a real run leaves them."""
    ended = timezone.now() - ago
    Process.objects.filter(pk=process.pk).update(state=state, finished_at=ended)
    ProcessEvent.objects.create(process=process, from_state=State.RUNNING, to_state=state,
                                at=ended, source="worker:test")
    ProcessLogChunk.objects.create(process=process, offset=0, end=6, text="hello\n")


def test_deleting_a_finished_process_removes_it_its_events_and_its_log(api):
    process = post_run(api)
    finish(process)

    answer = api.delete(f"/api/processes/{process.pk}/")

    assert answer.status_code == 204
    assert api.get(f"/api/processes/{process.pk}/").status_code == 404
    assert not Process.objects.filter(pk=process.pk).exists()
    assert not ProcessEvent.objects.filter(process_id=process.pk).exists()
    assert not ProcessLogChunk.objects.filter(process_id=process.pk).exists()
    entry = AuditEntry.objects.get(action="delete")
    assert entry.target == f"process {process.pk}"
    assert entry.detail["state"] == "SUCCEEDED"


@pytest.mark.parametrize("state", [State.PENDING, State.QUEUED, State.RUNNING, State.STOPPING])
def test_a_live_process_is_a_409_and_stays(api, state):
    process = post_run(api)
    Process.objects.filter(pk=process.pk).update(state=state)

    answer = api.delete(f"/api/processes/{process.pk}/")

    assert answer.status_code == 409
    assert state in answer.json()["detail"]
    assert "stop it" in answer.json()["detail"]
    assert Process.objects.get(pk=process.pk).state == state
    assert not AuditEntry.objects.filter(action="delete").exists()


def test_another_teams_process_is_a_404_and_stays(api, make_client):
    process = post_run(api)
    finish(process)
    _, stranger = make_client("mallory")

    answer = stranger.delete(f"/api/processes/{process.pk}/")

    assert answer.status_code == 404
    assert str(process.pk) not in answer.content.decode()
    assert Process.objects.filter(pk=process.pk).exists()


def test_retention_purges_only_what_finished_before_the_bound(api, settings):
    settings.RETENTION_DAYS = 30
    old = [post_run(api, f"old{n}") for n in range(5)]
    recent, live = post_run(api, "recent"), post_run(api, "live")
    for process in old:
        finish(process, State.FAILED, ago=timedelta(days=31))
    finish(recent, ago=timedelta(days=29))
    Process.objects.filter(pk=live.pk).update(state=State.RUNNING,
                                              created_at=timezone.now() - timedelta(days=90))

    purged = retention_purge(batch=2)  # three batches of at most 2

    assert purged == 5
    assert set(Process.objects.values_list("pk", flat=True)) == {recent.pk, live.pk}
    assert not ProcessLogChunk.objects.filter(process_id__in=[p.pk for p in old]).exists()
    assert AuditEntry.objects.filter(action="purge").count() == 3


def test_retention_off_keeps_everything(api, settings):
    settings.RETENTION_DAYS = 0
    process = post_run(api)
    finish(process, ago=timedelta(days=3650))

    assert retention_purge() == 0
    assert Process.objects.filter(pk=process.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_deleting_a_process_removes_its_outputs_bytes_from_the_store(api, settings, tmp_path):
    from apps.datasets.models import ProcessOutput
    from apps.datasets.storage import data_storage

    settings.DATA_STORAGE_URL = f"file://{tmp_path / 'store'}"
    process = post_run(api)
    finish(process)
    store = data_storage()
    key = f"outputs/{process.pk}/result.json"
    store.put(key, io.BytesIO(b"{}"))
    ProcessOutput.objects.create(process=process, path="result.json", size=2, sha256="x" * 64,
                                 key=key)

    assert api.delete(f"/api/processes/{process.pk}/").status_code == 204

    assert not ProcessOutput.objects.exists()
    assert store.stat(key) is None
