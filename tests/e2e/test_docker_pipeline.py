"""Docker pipelines end to end, as a client sees them, through real processes: the API (in the
test process), RabbitMQ, the control consumer and beat, a worker of the docker-main pool and
the real container engine at DOCKER_HOST (deploy/container-engine.sh).

After every test, no container labelled with one of its processes is left (see docker_run)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.processes import messaging
from apps.processes.models import Process
from tests.e2e.client import (
    PROCESSES,
    logs_of,
    path_of,
    state_of,
    wait_for_end,
    wait_for_log,
    wait_for_state,
)
from tests.e2e.stack import wait_until
from workers.contract import State

pytest_plugins = ["tests.e2e.docker_fixtures"]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def running_container(engine, pid: str) -> dict:
    """The one container of the process, which must be running."""
    found = engine.containers_of(pid)
    assert len(found) == 1, found
    assert found[0]["State"] == "running", found[0]
    return found[0]


def wait_for_no_container(engine, pid: str) -> None:
    """The worker removes the container on the poll that reports its end, just after it."""
    wait_until(lambda: not engine.containers_of(pid), timeout=20,
               what=f"the container of {pid} to be removed")


def test_hello_docker_succeeds_with_its_logs(api, docker_run):
    pid = docker_run("hello-docker", {"name": "container"})
    process = wait_for_end(pid)
    assert process.state == State.SUCCEEDED, process.message
    assert process.exit_code == 0, process.message
    assert path_of(api, pid) == ["PENDING", "QUEUED", "SUBMITTED", "RUNNING", "SUCCEEDED"]
    status = api.get(f"{PROCESSES}{pid}/status/").json()
    assert status["state"] == "SUCCEEDED"
    assert status["finished"] is True
    log = wait_for_log(api, pid, '"name": "container"')
    assert "Hello from container" in log
    assert f"process {pid}" in log
    detail = api.get(f"{PROCESSES}{pid}/").json()
    assert detail["handle"] == process.handle
    assert len(process.handle) >= 12


def test_python_pipeline_counts_the_words_of_a_dataset(api, docker_run, stack_env, settings):
    settings.DATA_STORAGE_URL = stack_env[0]["ORCH_STORAGE_URL"]  # the workers' store
    text = SimpleUploadedFile("hamlet.txt", b"to be or not to be\n")
    dataset = api.post("/api/datasets/", {"file": text}, format="multipart").json()
    pid = docker_run("wordcount-docker", {"input": dataset["id"], "top": 2})
    process = wait_for_end(pid)
    assert process.state == State.SUCCEEDED, process.message
    log = wait_for_log(api, pid, "}")
    result = json.loads(log[log.index("{"):])
    assert result["words"] == 6
    assert result["distinct"] == 4
    assert result["top"] == [{"word": "to", "count": 2}, {"word": "be", "count": 2}]
    outputs = {o["path"] for o in api.get(f"{PROCESSES}{pid}/outputs/").json()}
    assert outputs == {"counts.json", "top.txt"}
    top = b"".join(api.get(f"{PROCESSES}{pid}/outputs/top.txt").streaming_content)
    assert top == b"2\tto\n2\tbe\n"


def test_a_non_zero_exit_ends_failed_with_that_exit_code(api, docker_run):
    pid = docker_run("e2e-exit-docker", {"exit_code": 3})
    process = wait_for_end(pid)
    assert process.state == State.FAILED
    assert process.exit_code == 3
    assert "3" in process.message
    status = api.get(f"{PROCESSES}{pid}/status/").json()
    assert status["state"] == "FAILED"
    assert status["exit_code"] == 3
    assert "exiting with 3" in wait_for_log(api, pid, "exiting with")


def test_stop_of_a_running_container_ends_it_stopped_and_removed(api, docker_run, engine):
    pid = docker_run("e2e-sleep-docker", {"seconds": 300})
    wait_for_state(pid, State.RUNNING)
    wait_for_log(api, pid, "tick 0")
    running_container(engine, pid)
    response = api.post(f"{PROCESSES}{pid}/stop/")
    assert response.status_code == 200
    assert response.json()["state"] in ("STOPPING", "STOPPED")
    process = wait_for_end(pid)
    assert process.state == State.STOPPED, process.message
    assert path_of(api, pid)[-2:] == ["STOPPING", "STOPPED"]
    wait_for_no_container(engine, pid)
    assert "done" not in logs_of(api, pid)
    again = api.post(f"{PROCESSES}{pid}/stop/")  # idempotent
    assert again.status_code == 200
    assert again.json()["state"] == "STOPPED"


def test_a_job_spec_delivered_twice_gives_one_container(api, docker_run, engine, docker_worker):
    pid = docker_run("e2e-sleep-docker", {"seconds": 3})
    process = Process.objects.select_related("pipeline", "pipeline_version__pool").get(pk=pid)
    messaging.send_job_spec(process)  # redeliveries racing with the first one
    messaging.send_job_spec(process)
    process = wait_for_state(pid, State.RUNNING)
    assert [c["Id"] for c in engine.containers_of(pid)] == [process.handle]
    messaging.send_job_spec(process)  # a late redelivery while the container runs
    process = wait_for_end(pid)
    assert process.state == State.SUCCEEDED, process.message
    wait_for_no_container(engine, pid)
    messaging.send_job_spec(process)  # and one after the container was removed
    # Every delivery was answered with the one container's handle, and none started another.
    wait_until(lambda: _submits_answered(docker_worker.output(), process.handle) == 5,
               timeout=30, what="the worker to answer all five deliveries")
    assert not engine.containers_of(pid)
    log = wait_for_log(api, pid, "done")
    assert log.count("started ") == 1
    assert log.count("tick 0") == 1
    assert path_of(api, pid).count("SUBMITTED") == 1


def _submits_answered(worker_log: str, handle: str) -> int:
    """Submit tasks the worker finished that returned ``handle``."""
    return sum(1 for line in worker_log.splitlines()
               if "orchestration.worker.submit[" in line and "succeeded in" in line
               and handle in line)


def test_a_worker_killed_mid_run_sees_the_job_to_its_end_after_restart(
    api, docker_run, docker_worker, engine, work_root
):
    short = docker_run("e2e-sleep-docker", {"seconds": 3})  # ends while the worker is dead
    long = docker_run("e2e-sleep-docker", {"seconds": 8})  # runs on after the restart
    handles = {pid: wait_for_state(pid, State.RUNNING).handle for pid in (short, long)}
    docker_worker.kill(signal.SIGKILL)
    for pid in (short, long):
        assert running_container(engine, pid)["Id"] == handles[pid], "jobs outlive their worker"
    wait_until((Path(work_root) / short / "work" / "done").exists, timeout=30,
               what="the short job to end")
    assert state_of(short) == State.RUNNING  # nobody has seen its end yet
    docker_worker.start()
    for pid, seconds in ((short, 3), (long, 8)):
        process = wait_for_end(pid)
        assert process.state == State.SUCCEEDED, process.message
        assert process.exit_code == 0, process.message
        assert process.handle == handles[pid]
        log = wait_for_log(api, pid, "done")
        assert [line for line in log.splitlines() if line.startswith("tick")] == [
            f"tick {i}" for i in range(seconds)
        ]
        assert path_of(api, pid).count("SUBMITTED") == 1


def test_an_engine_restart_while_jobs_run_leaves_no_process_stuck(
    api, docker_run, engine, work_root
):
    short = docker_run("e2e-sleep-docker", {"seconds": 5})  # ends while the engine is down
    long = docker_run("e2e-sleep-docker", {"seconds": 15})  # runs on after the restart
    for pid in (short, long):
        wait_for_state(pid, State.RUNNING)
        wait_for_log(api, pid, "tick 0")
    short_done = Path(work_root) / short / "work" / "done"  # the job's own mark, on the host
    engine.script("stop")
    try:
        if engine.answers():
            pytest.fail("the engine at DOCKER_HOST still answers after "
                        "`deploy/container-engine.sh stop`: this drill restarts only an engine "
                        "that script started", pytrace=False)
        assert not short_done.exists(), "the short job ended before the engine went down"
        during = docker_run("hello-docker", {"name": "outage"})  # submitted while it is down
        wait_until(short_done.exists, timeout=30, what="the short job to end")
        time.sleep(1)  # a few more polls fail meanwhile: they must decide nothing
        for pid in (short, long):
            process = Process.objects.get(pk=pid)
            assert process.state == State.RUNNING
            assert process.missing_since is None
        assert state_of(during) == State.QUEUED
    finally:
        engine.script("start")
    wait_until(engine.answers, timeout=60, what="the engine to answer again")
    ended = {pid: wait_for_end(pid, timeout=90) for pid in (short, long, during)}
    assert {pid: p.state for pid, p in ended.items()} == dict.fromkeys(ended, State.SUCCEEDED)
    assert ended[short].exit_code == 0
    assert ended[long].exit_code == 0
    for pid, seconds in ((short, 5), (long, 15)):
        log = wait_for_log(api, pid, "done")
        ticks = [line for line in log.splitlines() if line.startswith("tick")]
        assert ticks == [f"tick {i}" for i in range(seconds)], log
    assert "outage" in wait_for_log(api, during, "outage")
    assert all(path_of(api, pid).count("SUBMITTED") == 1 for pid in ended)


def test_a_missing_image_fails_the_process_at_once_naming_the_image(
    api, docker_run, docker_worker, engine
):
    image = api.get("/api/pipelines/e2e-missing-image-docker/").json()["run"]["image"]
    assert not engine.has_image(image)
    pid = docker_run("e2e-missing-image-docker")
    process = wait_for_end(pid)
    assert process.state == State.FAILED
    assert image in process.message
    assert process.exit_code is None
    assert process.handle == ""
    status = api.get(f"{PROCESSES}{pid}/status/").json()
    assert status["state"] == "FAILED"
    assert image in status["message"]
    assert path_of(api, pid) == ["PENDING", "QUEUED", "FAILED"]
    assert f"submit of {pid} failed, retry" not in docker_worker.output()
    assert not engine.containers_of(pid)
