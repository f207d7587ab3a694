"""Events believed only from their source: a message on ``control`` changes a process only when
it is signed with the key of the worker it names, that worker serves the process's pool and,
for a job that lives on one host, runs on that host. Anything else is logged, counted where
staff see it, and changes nothing; the history names the verified worker."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.pipelines.models import RefusedReport, Worker
from apps.processes import tasks
from apps.processes.models import Process
from apps.processes.services import process_create
from tests.worker_reports import LOCAL_WORKER, signed, signed_events
from workers import secrets
from workers.contract import Event, Heartbeat, State
from workers.credential import Credential, derive
from workers.signing import Sender, master_keys

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[1]
NODE2 = Sender(pool="local", worker="local@node2")
DOCKER_WORKER = Sender(pool="docker-main", worker="docker-main@node1")


@pytest.fixture
def process(pipelines):
    created, _ = process_create(pipeline="sleep", used_config={"seconds": 1})
    return created


@pytest.fixture
def running(process):
    """A local process RUNNING on node1, as that host's worker reported it."""
    send(process, LOCAL_WORKER, state="SUBMITTED", handle="h1", host="node1")
    send(process, LOCAL_WORKER, state="RUNNING")
    process.refresh_from_db()
    assert process.state == State.RUNNING
    assert process.host == "node1"
    return process


def event(process, **fields) -> Event:
    return Event(process_id=str(process.pk), source=fields.pop("source", "worker:claimed"),
                 **fields)


def send(process, sender: Sender, **fields) -> int:
    """Deliver one event to the control consumer's task, signed as ``sender``."""
    return tasks.apply_events(signed_events([event(process, **fields)], sender))


def refused() -> dict[str, int]:
    return dict(RefusedReport.objects.values_list("reason", "count"))


def unchanged(process) -> tuple:
    fresh = Process.objects.get(pk=process.pk)
    return (fresh.state, fresh.exit_code, fresh.handle, fresh.host, fresh.log_size,
            fresh.events.count())


def test_a_forged_unsigned_or_badly_signed_event_changes_nothing(running, caplog):
    before = unchanged(running)
    ending = event(running, state="SUCCEEDED", exit_code=0, log="forged\n", log_offset=0,
                   log_end=7)
    assert tasks.apply_events([ending.to_dict()]) == 0  # a plain list, as workers sent before
    assert tasks.apply_events(signed_events([ending], key=b"an attacker's key")) == 0
    assert tasks.apply_events({**signed_events([ending]), "worker": "local@node9"}) == 0
    assert tasks.apply_events("nonsense") == 0
    assert unchanged(running) == before
    assert refused() == {"events message: unsigned": 2, "events message: bad signature": 2}
    assert "refused a events message: bad signature; it claims worker 'local@node9'" \
        in caplog.text


def test_an_event_signed_by_a_worker_of_another_pool_changes_nothing(running, caplog):
    before = unchanged(running)
    assert send(running, DOCKER_WORKER, state="SUCCEEDED", exit_code=0) == 0
    assert unchanged(running) == before
    assert refused() == {"event: a process of another pool": 1}
    assert f"refused an event for process {running.pk} from worker:docker-main@node1" \
        in caplog.text


def test_only_the_worker_of_the_host_that_holds_the_job_reports_on_it(running):
    before = unchanged(running)
    assert send(running, NODE2, state="FAILED", exit_code=1) == 0
    assert send(running, NODE2, missing=True, message="no such job") == 0
    assert unchanged(running) == before
    assert refused() == {"event: a job on another host": 2}
    # The holder's own events still apply, under its verified name.
    assert send(running, LOCAL_WORKER, state="SUCCEEDED", exit_code=0,
                source="worker:somebody-else") == 1
    running.refresh_from_db()
    assert running.state == State.SUCCEEDED
    assert list(running.events.values_list("source", flat=True))[2:] == [
        "worker:local@node1", "worker:local@node1", "worker:local@node1"]


def test_the_first_handle_must_be_on_the_reporting_workers_own_host(process):
    # A worker of node2 claiming that the job lives on node1 (whose polls go to node1).
    assert send(process, NODE2, state="SUBMITTED", handle="h1", host="node1") == 0
    process.refresh_from_db()
    assert process.handle == ""
    assert process.state != State.SUBMITTED
    assert refused() == {"event: a handle reported for another host": 1}
    # Any worker of the pool may have taken the spec: node2's own handle is believed.
    assert send(process, NODE2, state="SUBMITTED", handle="h2", host="node2") == 1
    process.refresh_from_db()
    assert (process.state, process.handle, process.host) == (State.SUBMITTED, "h2", "node2")


def test_any_worker_of_a_pool_with_one_front_door_reports_on_its_jobs(pipelines):
    process, _ = process_create(pipeline="hello-slurm", used_config={})
    one, other = (Sender("slurm-main", f"slurm-main@{host}") for host in ("login1", "login2"))
    assert send(process, one, state="SUBMITTED", handle="42", host="login1") == 1
    assert send(process, other, state="RUNNING") == 1
    assert send(process, LOCAL_WORKER, state="FAILED", exit_code=1) == 0
    process.refresh_from_db()
    assert process.state == State.RUNNING
    assert refused() == {"event: a process of another pool": 1}


def test_one_read_decides_a_quiet_batch(running, django_assert_num_queries):
    """Checking the source costs no query per event: a poll of many quiet jobs is one read."""
    quiet = [event(running, state="RUNNING") for _ in range(50)]
    with django_assert_num_queries(1):
        assert tasks.apply_events(signed_events(quiet)) == 0


def test_a_heartbeat_is_recorded_under_the_identity_its_signature_proves(db):
    beat = Heartbeat(pool="local", host="node7", target="local", version="1", capacity=4,
                     busy=0, name="someone@node7").to_dict()
    tasks.heartbeat(beat)  # unsigned
    tasks.heartbeat(signed("heartbeat", beat, key=b"an attacker's key"))
    assert not Worker.objects.exists()
    assert refused() == {"heartbeat message: unsigned": 1,
                         "heartbeat message: bad signature": 1}
    tasks.heartbeat(signed("heartbeat", beat, NODE2))
    assert list(Worker.objects.values_list("pool", "host", "name")) == [
        ("local", "node2", "local@node2")]


def test_staff_see_the_refused_counts_in_health_and_strangers_do_not(running, make_client):
    tasks.apply_events([event(running, state="SUCCEEDED").to_dict()])
    staff = make_client("ops", staff=True)[1].get("/api/health/").json()
    assert staff["refused"]["events message: unsigned"]["count"] == 1
    assert "plain list of 1 events" in staff["refused"]["events message: unsigned"][
        "last_detail"]
    anonymous = make_client("someone")[1].get("/api/health/").json()
    assert "refused" not in anonymous
    out = io.StringIO()
    with pytest.raises(SystemExit):  # no control consumer or beat here: exit 1, still printed
        call_command("health", stdout=out)
    assert "refused 1 x events message: unsigned" in out.getvalue()


# --- a worker's credential --------------------------------------------------------------------

def test_the_worker_credential_command_prints_the_keys_of_one_worker(pipelines):
    out = io.StringIO()
    call_command("worker_credential", "--pool", "local", "--worker", "local@node1", stdout=out)
    lines = dict(line.split("=", 1) for line in out.getvalue().splitlines())
    assert set(lines) <= {"ORCH_WORKER_CREDENTIAL", "ORCH_POOL_SECRETS_KEYS"}
    text = lines["ORCH_WORKER_CREDENTIAL"]
    if "ORCH_POOL_SECRETS_KEYS" in lines:  # the pool's keys, never a master secrets key
        assert lines["ORCH_POOL_SECRETS_KEYS"] == secrets.pool_keys_text("local")
    assert Credential.from_text(text) == derive("local", "local@node1", master_keys())
    assert all(master.decode() not in text for master in master_keys())
    with pytest.raises(CommandError, match="--pool: no pool named 'nope'"):
        call_command("worker_credential", "--pool", "nope", "--worker", "a@b")
    with pytest.raises(CommandError, match="--worker: expected NAME@HOST"):
        call_command("worker_credential", "--pool", "local", "--worker", "node1")


def test_a_worker_given_another_pools_credential_refuses_to_start(tmp_path):
    other = derive("docker-main", "docker-main@node1", master_keys(create=True)).to_text()
    env = {"PATH": os.environ["PATH"], "ORCH_ENV_FILE": str(tmp_path / "none.env"),
           "ORCH_BROKER_URL": f"sqlite:///{tmp_path / 'broker.sqlite3'}",
           "ORCH_WORKER_CREDENTIAL": other}
    done = subprocess.run([sys.executable, "-m", "workers", "--pool", "local"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "credential is for worker 'docker-main@node1' of pool 'docker-main'" in done.stderr
    assert "worker_credential --pool local" in done.stderr
    assert not (tmp_path / "broker.sqlite3").exists()  # it never reached the broker
