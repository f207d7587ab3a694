"""A run waiting QUEUED while its pool is down (a weekend) is not lost to the workers' age
bound on signed specs: its spec is signed and sent again at half that bound."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from apps.processes import messaging
from apps.processes.models import Process
from apps.processes.polling import specs_resend
from apps.processes.services import process_create
from workers.contract import State


def queued(sent_hours_ago: float | None, queued_hours_ago: float = 40) -> Process:
    process, _ = process_create(pipeline="hello", used_config={})
    now = timezone.now()
    Process.objects.filter(pk=process.pk).update(
        state=State.QUEUED, queued_at=now - timedelta(hours=queued_hours_ago),
        spec_sent_at=None if sent_hours_ago is None else now - timedelta(hours=sent_hours_ago))
    return process


def test_waiting_specs_are_signed_again_before_workers_find_them_stale(
        pipelines, monkeypatch):
    monkeypatch.setenv("ORCH_SIGNATURE_MAX_AGE_S", str(24 * 3600))
    sent = []
    monkeypatch.setattr(messaging, "send_job_spec", lambda process: sent.append(process.pk))
    old, fresh, never = queued(13), queued(1), queued(None, queued_hours_ago=30)

    assert specs_resend() == 2
    assert sorted(sent) == sorted([old.pk, never.pk])
    for process in (old, never):
        process.refresh_from_db()
        assert timezone.now() - process.spec_sent_at < timedelta(minutes=1)
    assert specs_resend() == 0  # sent just now: nothing is due again
    fresh.refresh_from_db()
    assert fresh.state == State.QUEUED


def test_a_running_or_finished_process_is_never_sent_again(pipelines, monkeypatch):
    sent = []
    monkeypatch.setattr(messaging, "send_job_spec", lambda process: sent.append(process.pk))
    process = queued(30)
    Process.objects.filter(pk=process.pk).update(state=State.RUNNING)
    assert specs_resend() == 0
    assert sent == []
