"""Slurm pipelines end to end, as a client sees them, through real processes: the API (in the
test process), RabbitMQ, the control consumer and beat, a worker of the slurm-main pool
(sbatch, squeue, scancel, sacct) and the Slurm cluster of deploy/slurm-cluster.sh; the tests
marked both_slurm_clusters run again on 24.11's (deploy/slurm24-cluster.sh).

After every test, every Slurm job of its processes is cancelled (see slurm_run)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from apps.processes import messaging
from apps.processes.models import Process
from tests.e2e.client import (
    PROCESSES,
    logs_of,
    path_of,
    wait_for_end,
    wait_for_log,
    wait_for_state,
)
from tests.e2e.stack import wait_until
from workers.contract import State

pytest_plugins = ["tests.e2e.slurm_fixtures"]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.mark.both_slurm_clusters
def test_hello_slurm_succeeds_with_its_logs(api, slurm_run, jobs_named):
    pid = slurm_run("hello-slurm", {"name": "cluster"})
    process = wait_for_end(pid)
    assert process.state == State.SUCCEEDED, process.message
    assert process.exit_code == 0, process.message
    assert path_of(api, pid)[:2] == ["PENDING", "QUEUED"]
    assert path_of(api, pid)[-1] == "SUCCEEDED"
    status = api.get(f"{PROCESSES}{pid}/status/").json()
    assert status["state"] == "SUCCEEDED"
    assert status["finished"] is True
    log = wait_for_log(api, pid, '"name": "cluster"')
    job_id = process.handle.split(":")[0]
    assert f"Hello from Slurm job {job_id} on" in log
    assert f"process {pid}" in log
    assert process.handle.split(":")[1] == f"orch-{pid}"
    assert jobs_named(f"orch-{pid}") == [job_id]


@pytest.mark.both_slurm_clusters
def test_a_non_zero_exit_ends_failed_with_that_exit_code(api, slurm_run):
    pid = slurm_run("e2e-exit-slurm", {"exit_code": 3})
    process = wait_for_end(pid)
    assert process.state == State.FAILED, process.message
    assert process.exit_code == 3
    assert "3" in process.message
    status = api.get(f"{PROCESSES}{pid}/status/").json()
    assert status["state"] == "FAILED"
    assert status["exit_code"] == 3
    assert "exiting with 3" in wait_for_log(api, pid, "exiting with")


@pytest.mark.both_slurm_clusters
def test_stop_of_a_running_job_ends_it_stopped(api, slurm_run, slurm_job_state):
    pid = slurm_run("e2e-sleep-slurm", {"seconds": 300})
    wait_for_state(pid, State.RUNNING)
    wait_for_log(api, pid, "tick 0")
    response = api.post(f"{PROCESSES}{pid}/stop/")
    assert response.status_code == 200
    assert response.json()["state"] in ("STOPPING", "STOPPED")
    process = wait_for_end(pid)
    assert process.state == State.STOPPED, process.message
    assert path_of(api, pid)[-2:] == ["STOPPING", "STOPPED"]
    job_id = process.handle.split(":")[0]
    wait_until(lambda: slurm_job_state(job_id) == "CANCELLED", timeout=30,
               what=f"Slurm to call job {job_id} CANCELLED")
    assert "done" not in logs_of(api, pid)
    again = api.post(f"{PROCESSES}{pid}/stop/")  # idempotent
    assert again.status_code == 200
    assert again.json()["state"] == "STOPPED"


def test_a_time_limit_ends_failed_with_the_reason(api, slurm_run, slurm_job_state):
    # Slurm's smallest limit is one minute, checked every 30 s: this takes 60 to 100 s.
    pid = slurm_run("e2e-timeout-slurm")
    wait_for_state(pid, State.RUNNING)
    process = wait_for_end(pid, timeout=180)
    assert process.state == State.FAILED, process.message
    assert "time limit" in process.message, process.message
    assert "TIMEOUT" in process.message, process.message
    assert path_of(api, pid)[-2:] == ["RUNNING", "FAILED"]
    assert slurm_job_state(process.handle.split(":")[0]) == "TIMEOUT"
    log = logs_of(api, pid)
    assert "started" in log
    assert "done" not in log


def test_a_job_spec_delivered_twice_gives_one_slurm_job(api, slurm_run, jobs_named,
                                                        slurm_worker):
    pid = slurm_run("e2e-sleep-slurm", {"seconds": 3})
    process = Process.objects.select_related("pipeline", "pipeline_version__pool").get(pk=pid)
    messaging.send_job_spec(process)  # redeliveries racing with the first one
    messaging.send_job_spec(process)
    process = wait_for_state(pid, State.RUNNING)
    job_id = process.handle.split(":")[0]
    assert jobs_named(f"orch-{pid}") == [job_id]
    messaging.send_job_spec(process)  # a late redelivery while the job runs
    process = wait_for_end(pid)
    assert process.state == State.SUCCEEDED, process.message
    messaging.send_job_spec(process)  # and one after its end was reported
    # Every delivery was answered with the one job's handle, and none submitted another.
    wait_until(lambda: _submits_answered(slurm_worker.output(), process.handle) == 5,
               timeout=30, what="the worker to answer all five deliveries")
    log = wait_for_log(api, pid, "done")
    assert log.count("started ") == 1
    assert log.count("tick 0") == 1
    assert path_of(api, pid).count("SUBMITTED") <= 1
    assert jobs_named(f"orch-{pid}") == [job_id]


def _submits_answered(worker_log: str, handle: str) -> int:
    """Submit tasks the worker finished that returned ``handle``."""
    return sum(1 for line in worker_log.splitlines()
               if "orchestration.worker.submit[" in line and "succeeded in" in line
               and handle in line)


def test_hostile_config_values_stay_literal_data(api, slurm_run):
    # /tmp: where the job's user could create it, were it fooled (pytest's tmp_path is root's)
    marker = Path(f"/tmp/pwned-{uuid.uuid4()}")  # noqa: S108 - only a name, never opened
    text = (f"$(touch {marker}) `touch {marker}` ; touch {marker} 'single' \"double\"\n"
            f"#SBATCH --partition=nowhere\nlast line $HOME \\n")
    pid = slurm_run("e2e-echo-slurm", {"text": text})
    process = wait_for_end(pid)
    assert process.state == State.SUCCEEDED, process.message
    assert process.exit_code == 0, process.message
    log = wait_for_log(api, pid, ">>>")
    assert f"<<<\n{text}\n>>>" in log
    assert not marker.exists()
    assert api.get(f"{PROCESSES}{pid}/").json()["used_config"] == {"text": text}


def test_a_runs_sbatch_options_reach_its_slurm_job(api, slurm_run, slurm_pipelines_dir):
    slurm_run("e2e-options-slurm")  # loads the test pipelines; a run with the file's options
    body = {"pipeline": "e2e-options-slurm",
            "sbatch": {"constraint": "orch&loopback", "ntasks": 2, "mail_type": ["END"],
                       "mail_user": "ada@lab.example.org"}}
    response = api.post(PROCESSES, body, format="json")
    assert response.status_code == 201, response.content
    pid = response.json()["id"]
    process = wait_for_end(pid)
    assert process.state == State.SUCCEEDED, process.message
    assert "tasks=2 cwd=" in wait_for_log(api, pid, "tasks=")
    job = subprocess.run(["scontrol", "show", "job", process.handle.split(":")[0]],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    for shown in ("Features=orch&loopback", "NumTasks=2", "MailUser=ada@lab.example.org",
                  "MailType=END"):
        assert shown in job, job
    refused = api.post(PROCESSES, {**body, "sbatch": {"ntasks": 3}}, format="json")
    assert refused.status_code == 400
    assert "sbatch.ntasks: 3 is more than the 2 allowed" in " ".join(
        refused.json()["fields"]["sbatch"])


@pytest.mark.both_slurm_clusters
def test_health_shows_the_pools_cluster_as_its_worker_sees_it(api, slurm_run):
    """The worker's heartbeat says its cluster answers (scontrol ping of its release), with
    the settings every poll round brings, a run's or not."""

    def reported():
        pool = api.get("/api/health/").json().get("pools", {}).get("slurm-main", {})
        return pool.get("cluster")

    cluster = wait_until(reported, 60)
    assert cluster["reachable"] is True, cluster
    assert cluster["rest_api_version"] is None  # the sbatch target speaks no REST
    pools = {p["name"]: p for p in api.get("/api/pools/").json()}
    assert pools["slurm-main"]["status"] == "up"
    assert pools["slurm-main"]["cluster"]["reachable"] is True
