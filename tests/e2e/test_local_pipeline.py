"""A pipeline run end to end, as a client sees it, through real processes: the API (in the
test process), RabbitMQ, the control consumer and beat, and a worker of the local pool."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.processes import messaging
from apps.processes.models import Process
from tests.e2e.client import PROCESSES, path_of, post_process, wait_for_end, wait_for_state
from tests.e2e.stack import wait_until
from workers.contract import State

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def run(api, local_worker):
    """run(pipeline, config) -> process id, posted through the API."""

    return lambda pipeline, config=None: post_process(api, pipeline, config)


def runner_alive(work_root: str, pid: str) -> bool:
    pid_file = Path(work_root) / pid / "pid"
    if not pid_file.exists():
        return False
    runner = int(pid_file.read_text().split()[0])
    run_dir = Path(work_root) / pid
    try:  # a runner works in its run dir (the worker's starter forked it)
        return os.readlink(f"/proc/{runner}/cwd") == os.path.realpath(run_dir)
    except OSError:
        return False


def test_hello_runs_end_to_end_with_its_logs(api, run):
    pid = run("hello", {"name": "Ada"})
    process = wait_for_end(pid)
    assert process.state == State.SUCCEEDED
    assert process.exit_code == 0
    assert path_of(api, pid) == ["PENDING", "QUEUED", "SUBMITTED", "RUNNING", "SUCCEEDED"]
    status = api.get(f"{PROCESSES}{pid}/status/").json()
    assert status["state"] == "SUCCEEDED"
    assert status["finished"] is True
    wait_until(lambda: "Hello, Ada!" in api.get(f"{PROCESSES}{pid}/logs/").json()["text"],
               what="the log")


def test_a_failing_job_ends_failed_with_its_exit_code(api, run):
    process = wait_for_end(run("fail", {"exit_code": 3}))
    assert process.state == State.FAILED
    assert process.exit_code == 3
    assert "3" in process.message


def test_real_work_on_a_dataset(api, run, stack_env, settings):
    settings.DATA_STORAGE_URL = stack_env[0]["ORCH_STORAGE_URL"]  # the workers' store
    data = b"the cat and the hat\n" * 10
    dataset = api.post("/api/datasets/", {"file": SimpleUploadedFile("cat.txt", data)},
                       format="multipart").json()
    pid = run("checksum", {"input": dataset["id"], "top": 1})
    assert wait_for_end(pid).state == State.SUCCEEDED
    text = wait_until(lambda: api.get(f"{PROCESSES}{pid}/logs/").json()["text"], what="logs")
    assert f'"sha256": "{hashlib.sha256(data).hexdigest()}"' in text
    assert '"top_words": [\n    [\n      "the",\n      20\n    ]\n  ]' in text
    outputs = api.get(f"{PROCESSES}{pid}/outputs/").json()
    assert [o["path"] for o in outputs] == ["result.json"]


def test_stop_of_a_running_job_ends_it_stopped(api, run, work_root):
    pid = run("sleep", {"seconds": 120})
    wait_for_state(pid, State.RUNNING)
    response = api.post(f"{PROCESSES}{pid}/stop/")
    assert response.status_code == 200
    assert response.json()["state"] in ("STOPPING", "STOPPED")
    process = wait_for_end(pid)
    assert process.state == State.STOPPED
    assert not runner_alive(work_root, pid)
    assert path_of(api, pid)[-2:] == ["STOPPING", "STOPPED"]
    again = api.post(f"{PROCESSES}{pid}/stop/")  # idempotent
    assert again.status_code == 200
    assert again.json()["state"] == "STOPPED"


def test_a_job_spec_delivered_twice_runs_once(api, run, work_root):
    pid = run("sleep", {"seconds": 2})
    process = Process.objects.select_related("pipeline", "pipeline_version__pool").get(pk=pid)
    messaging.send_job_spec(process)  # the redelivery after a late acknowledgement
    messaging.send_job_spec(process)
    assert wait_for_end(pid).state == State.SUCCEEDED
    log = wait_until(lambda: "done" in (t := api.get(f"{PROCESSES}{pid}/logs/").json()["text"])
                     and t, what="the whole log")
    assert log.count("slept 0 of 2 s") == 1
    assert path_of(api, pid).count("SUBMITTED") == 1


def test_a_worker_killed_while_its_job_runs_loses_and_doubles_nothing(
    api, run, local_worker, work_root
):
    pid = run("sleep", {"seconds": 4})
    wait_for_state(pid, State.RUNNING)
    local_worker.kill(signal.SIGKILL)
    assert runner_alive(work_root, pid), "the job must not die with its worker"
    local_worker.start()
    process = wait_for_end(pid)
    assert process.state == State.SUCCEEDED
    log = wait_until(lambda: "done" in (t := api.get(f"{PROCESSES}{pid}/logs/").json()["text"])
                     and t, what="the whole log")
    assert log.count("slept 0 of 4 s") == 1
    assert len([p for p in Path(work_root).iterdir() if p.name == pid]) == 1


def test_a_stop_asked_while_the_worker_is_down_is_carried_out_when_it_returns(
    api, run, local_worker, work_root
):
    pid = run("sleep", {"seconds": 120})
    wait_for_state(pid, State.RUNNING)
    local_worker.kill(signal.SIGKILL)
    assert api.post(f"{PROCESSES}{pid}/stop/").json()["state"] == "STOPPING"
    local_worker.start()
    assert wait_for_end(pid).state == State.STOPPED
    assert not runner_alive(work_root, pid)


def test_health_and_pools_show_the_live_worker(api, client, make_client, local_worker):
    def local_pool_live():  # and the control consumer's and beat's heartbeats, once flushed
        health = client.get("/api/health/").json()
        return health["status"] == "ok" and health["pools"].get("local", {}).get("workers")

    wait_until(local_pool_live, what="a heartbeat of the local pool and the control plane")
    health = client.get("/api/health/").json()
    assert health["status"] == "ok"
    assert health["broker"]["ok"]
    assert health["database"]["ok"]
    pools = {p["name"]: p for p in api.get("/api/pools/").json()}
    assert pools["local"]["status"] == "up"
    assert "workers" not in pools["local"]
    staff = make_client("ops", staff=True)[1]  # workers' names and hosts are for staff
    pools = {p["name"]: p for p in staff.get("/api/pools/").json()}
    assert pools["local"]["workers"][0]["host"] == os.uname().nodename.split(".")[0]
