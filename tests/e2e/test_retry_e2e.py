"""A retried Docker job end to end, as a client sees it: its container is killed and removed
under it, reconciliation declares the job lost, the pipeline's ``retry`` starts attempt 2 (a
container of its own), and the process succeeds with both attempts listed by the API.

Real processes throughout: the API (in the test process), RabbitMQ, the control consumer and
beat, a worker of the docker-main pool and the container engine at DOCKER_HOST."""

from __future__ import annotations

import shutil

import pytest

from apps.pipelines.services import pipelines_load
from apps.processes.models import Process
from tests.e2e.client import PROCESSES, logs_of, wait_for_end, wait_for_log, wait_for_state
from tests.e2e.stack import wait_until
from tests.executors.docker_engine import BUSYBOX
from workers.contract import State

pytest_plugins = ["tests.e2e.docker_fixtures"]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

POOL = "docker-main"
RETRY_PIPELINES = {
    "e2e-retry-docker": f"""
name: e2e-retry-docker
version: "1"
description: Ticks for a while, then succeeds; retried when its job is lost (retry e2e tests).
target: docker
pool: {POOL}
run:
  image: {BUSYBOX}
  command:
    - sh
    - -c
    - echo started; i=0; while [ $i -lt 8 ]; do sleep 1; i=$((i+1)); done; echo finished
resources: {{cpus: 0.5, memory: 32M, time_limit: 5m}}
retry: {{attempts: 2, on: [lost], delay: 1s}}
""",
}


@pytest.fixture
def retry_pipelines(docker_run, docker_pipelines_dir, tmp_path):
    """The docker tests' pipelines and the retried one (loaded after docker_run's, which
    would retire it)."""
    folder = shutil.copytree(docker_pipelines_dir, tmp_path / "pipelines")
    for name, text in RETRY_PIPELINES.items():
        (folder / f"{name}.yaml").write_text(text.lstrip())
    report = pipelines_load(folder)
    assert not report.errors, report.errors
    return docker_run


def test_a_lost_container_is_retried_and_the_process_succeeds_on_attempt_2(
        api, engine, docker_worker, retry_pipelines):
    pid = retry_pipelines("e2e-retry-docker")
    first = wait_for_state(pid, State.RUNNING, timeout=60)
    assert first.attempt == 1
    # RUNNING shows from the container's own start, before a poll has read its first line: the
    # log kept of attempt 1 is what was read before the loss.
    wait_for_log(api, pid, "started")
    # The container is killed and removed under the job (podman rm -f through the engine API),
    # the worker held still meanwhile: a poll between the kill and the removal would rightly
    # report a container that exited with 137 (FAILED), not one that is gone.
    with docker_worker.frozen():
        engine.remove_containers_of(pid)
    # Reconciliation waits its grace period (30 s in these tests) before it calls it lost.
    try:
        wait_until(lambda: Process.objects.get(pk=pid).attempt == 2, timeout=120,
                   what=f"{pid} to start attempt 2")
    except AssertionError as failed:
        process = Process.objects.get(pk=pid)
        raise AssertionError(f"{failed}; it is {process.state}: {process.message}") from None
    process = wait_for_end(pid, timeout=120)
    assert process.state == State.SUCCEEDED, process.message
    assert process.attempt == 2

    body = api.get(f"{PROCESSES}{pid}/").json()
    assert body["attempt"] == 2
    one, two = body["attempts"]
    assert (one["number"], one["state"], one["reason"]) == (1, "LOST", "lost")
    assert one["handle"] == first.handle
    assert (two["number"], two["state"], two["exit_code"]) == (2, "SUCCEEDED", 0)
    assert two["handle"] not in ("", one["handle"])
    assert one["ended_at"] <= two["created_at"]
    # A new attempt is an explicit event, never a silent move back.
    events = api.get(f"{PROCESSES}{pid}/events/").json()
    retry = [e for e in events if e["to"] == "PENDING" and e["from"]]
    assert len(retry) == 1
    assert retry[0]["from"] == "LOST"
    assert retry[0]["attempt"] == 2
    assert "retry: attempt 2 of 2 after lost" in retry[0]["detail"]
    assert [e["to"] for e in events if e["attempt"] == 2] == [
        "PENDING", "QUEUED", "SUBMITTED", "RUNNING", "SUCCEEDED"]
    log = logs_of(api, pid)
    assert log.count("started") == 2
    assert log.rstrip().endswith("finished")
