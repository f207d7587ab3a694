"""A host that never comes back (issue 18): once every worker of a host-bound pool on one host
has been silent past the pool's ``host_lost_after``, the processes whose jobs live there end
LOST with "host X silent since T"; the other hosts' go on, and the dead host's late events
never revive what ended. Through the poll loop's round and the API; the real stack test is
tests/e2e/test_host_lost_e2e.py."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from apps.pipelines.definitions import DefinitionError, parse_pool
from apps.pipelines.models import Pool, Worker
from apps.processes import lost_hosts
from apps.processes.events import events_apply
from apps.processes.lost_hosts import Listening, silent_hosts_end
from apps.processes.models import Process
from apps.processes.polling import pools_poll
from apps.processes.services import process_create, process_stop
from workers.contract import Event, State
from workers.signing import Sender

pytestmark = pytest.mark.django_db

NODE1 = Sender(pool="local", worker="local@node1")
NODE2 = Sender(pool="local", worker="local@node2")


@pytest.fixture
def polls(monkeypatch) -> list:
    """The poll requests sent (nothing reaches the broker); the control plane has been
    listening, round after round, for an hour."""
    from apps.processes import messaging

    sent: list = []
    monkeypatch.setattr(messaging, "send_poll", sent.append)
    now = timezone.now()
    monkeypatch.setattr(lost_hosts, "LISTENING", Listening(since=now - timedelta(hours=1),
                                                           last_round=now))
    return sent


def end_silent() -> int:
    """A round's ending of silent hosts, by a control plane listening for an hour."""
    return silent_hosts_end(timezone.now() - timedelta(hours=1))


def heartbeat(sender: Sender, minutes_ago: float) -> None:
    Worker.objects.update_or_create(
        pool=sender.pool, host=sender.host, name=sender.worker,
        defaults={"target": "local", "last_seen": timezone.now() - timedelta(minutes=minutes_ago)})


def running_on(sender: Sender, owner) -> Process:
    """A process of ``owner`` (a client) whose job runs on ``sender``'s host, as that worker
    reported it."""
    app, _ = owner
    process, _ = process_create(pipeline="sleep", used_config={"seconds": 1}, owner=app.user,
                                application=app, team=app.team_memberships.get().team)
    events_apply([Event(process_id=str(process.pk), source="", state="RUNNING",
                        handle=f"h-{process.pk}", host=sender.host)], sender)
    process.refresh_from_db()
    assert process.state == State.RUNNING
    return process


@pytest.fixture
def owner(pipelines, make_client):
    """(application, API client) of a client of team lab."""
    return make_client("lab")


def test_a_silent_hosts_processes_end_lost_and_the_other_hosts_go_on(owner, polls):
    _, lab = owner
    heartbeat(NODE1, minutes_ago=11)  # past the default bound of 10 minutes
    heartbeat(NODE2, minutes_ago=0.1)
    dead = [running_on(NODE1, owner) for _ in range(2)]
    alive = [running_on(NODE2, owner) for _ in range(2)]

    pools_poll()  # the beat's round

    silent_since = Worker.objects.get(host="node1").last_seen
    for process in dead:
        shown = lab.get(f"/api/processes/{process.pk}/").json()
        assert shown["state"] == "LOST"
        assert shown["message"] == (f"host node1 silent since "
                                    f"{silent_since:%Y-%m-%d %H:%M:%S} UTC")
        last = lab.get(f"/api/processes/{process.pk}/events/").json()[-1]
        assert (last["from"], last["to"], last["source"]) == ("RUNNING", "LOST", "control")
    assert {p.state for p in Process.objects.filter(pk__in=[p.pk for p in alive])} == {
        State.RUNNING}
    # Polls go to the live host only: nobody reads the dead host's queue.
    assert {(r.host, len(r.items)) for r in polls if r.items} == {("node2", 2)}


def test_a_late_event_from_the_host_that_came_back_changes_nothing(owner, polls):
    heartbeat(NODE1, minutes_ago=30)
    process = running_on(NODE1, owner)
    assert end_silent() == 1

    heartbeat(NODE1, minutes_ago=0)  # it returns and reports the job it still knew
    events_apply([Event(process_id=str(process.pk), source="", state="SUCCEEDED",
                        exit_code=0)], NODE1)
    process.refresh_from_db()
    assert process.state == State.LOST
    assert process.exit_code is None
    assert process.message.startswith("host node1 silent since ")
    assert [e.to_state for e in process.events.all()][-1] == State.LOST


def test_the_bound_is_the_pools_own(owner, polls):
    Pool.objects.filter(name="local").update(host_lost_after_s=3600)
    heartbeat(NODE1, minutes_ago=30)
    process = running_on(NODE1, owner)
    assert end_silent() == 0
    process.refresh_from_db()
    assert process.state == State.RUNNING

    Pool.objects.filter(name="local").update(host_lost_after_s=60)
    assert end_silent() == 1
    process.refresh_from_db()
    assert process.state == State.LOST


def test_a_process_asked_to_stop_on_a_silent_host_ends_stopped(owner, polls, monkeypatch):
    from apps.processes import messaging

    monkeypatch.setattr(messaging, "send_cancel", lambda process: None)
    heartbeat(NODE1, minutes_ago=30)
    process = running_on(NODE1, owner)
    process_stop(process)
    process.refresh_from_db()
    assert process.state == State.STOPPING

    assert end_silent() == 1
    process.refresh_from_db()
    assert process.state == State.STOPPED
    assert process.message.startswith("host node1 silent since ")


def test_a_host_never_heard_from_counts_from_its_last_job(owner, polls):
    process = running_on(NODE1, owner)  # no heartbeat row for node1 at all
    assert end_silent() == 0
    Process.objects.filter(pk=process.pk).update(
        submitted_at=timezone.now() - timedelta(minutes=11))
    assert end_silent() == 1


def test_host_lost_after_is_read_from_the_pool_file(tmp_path: Path):
    path = tmp_path / "edge.yaml"
    path.write_text("name: edge\ntarget: local\nhost_lost_after: 2m\nsettings: {}\n")
    assert parse_pool(path).host_lost_after_s == 120
    path.write_text("name: edge\ntarget: local\nsettings: {}\n")
    assert parse_pool(path).host_lost_after_s == 600
    path.write_text("name: edge\ntarget: local\nhost_lost_after: soon\nsettings: {}\n")
    with pytest.raises(DefinitionError, match="host_lost_after"):
        parse_pool(path)


def test_silence_counts_only_while_the_control_plane_could_hear(owner, polls, settings):
    """Heartbeats come through the queue the rounds come by: a host's last heartbeat before
    the control plane (or its broker) was away says nothing of the time it was away."""
    heartbeat(NODE1, minutes_ago=30)
    process = running_on(NODE1, owner)
    now = timezone.now()
    assert silent_hosts_end(listening_since=now - timedelta(minutes=9), now=now) == 0

    settings.WORKER_TIMEOUT_S = 30
    listening = Listening()
    assert listening.round(now) == now  # a control plane that just started
    assert listening.round(now + timedelta(seconds=2)) == now  # round after round
    back = now + timedelta(minutes=5)
    assert listening.round(back) == back  # after a gap, it listens again from then
    assert silent_hosts_end(listening.round(back + timedelta(seconds=2)),
                            now=back + timedelta(seconds=2)) == 0
    assert silent_hosts_end(now - timedelta(minutes=11), now=now) == 1
    process.refresh_from_db()
    assert process.state == State.LOST
