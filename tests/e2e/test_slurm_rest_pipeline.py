"""A pool of the slurm_rest target end to end, on Slurm 22.05 and on 24.11: its worker speaks to
slurmrestd alone (no Slurm command, no munge key), reports the cluster and the REST version it
negotiated before any run is posted, runs a job to SUCCEEDED with its log, and reports a failing
job's exit code and a stop, all through the API a client uses.

Real processes throughout: the API (in the test process), RabbitMQ, the control consumer and
beat, a worker of the pool and the cluster's slurmrestd (deploy/slurm-cluster.sh,
deploy/slurm24-cluster.sh). The pool's file is written here, for the cluster of the run."""

from __future__ import annotations

import shutil

import pytest
import requests

from apps.pipelines.services import pipelines_load
from tests.e2e import stack
from tests.e2e.client import (
    PROCESSES,
    logs_of,
    path_of,
    post_process,
    wait_for_end,
    wait_for_state,
)
from tests.e2e.slurm_fixtures import _READ, JOB_USER, current, slurm
from tests.e2e.stack import wait_until
from tests.work_roots import reachable_work_root
from workers.contract import State

pytest_plugins = ["tests.e2e.slurm_fixtures"]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e,
              pytest.mark.both_slurm_clusters]

POOL = "slurm-rest-e2e"  # its name tells the worker its target: slurm_rest
PIPELINE = f"""
name: e2e-echo-slurm-rest
version: "1"
description: Prints the text from its config, then exits with the code it names (REST e2e tests).
target: slurm_rest
pool: {POOL}
run:
  command:
    - sh
    - -c
    - |
      echo "text: $({_READ.format(key="text")})"
      sleep "$({_READ.format(key="seconds")})"
      exit "$({_READ.format(key="exit_code")})"
resources: {{cpus: 1, memory: 64M, time_limit: 5m}}
config_schema:
  type: object
  properties:
    text: {{type: string, maxLength: 200}}
    seconds: {{type: integer, minimum: 0, maximum: 300}}
    exit_code: {{type: integer, minimum: 0, maximum: 255}}
  additionalProperties: false
defaults: {{text: hello, seconds: 0, exit_code: 0}}
"""


@pytest.fixture(scope="package")
def rest_work_root():
    """Run dirs the worker hands to the jobs' user, where slurmd of either release sees them
    (/tmp is bound into the 24.11 daemons' namespaces)."""
    path = reachable_work_root("orch-e2e-rest-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="package")
def rest_worker(stack_env, control_plane, cluster, slurm_release):
    try:
        requests.get(f"{current().url}/openapi/v3", timeout=5)
    except requests.RequestException as exc:
        pytest.skip(f"slurmrestd of Slurm {slurm_release} does not answer at {current().url} "
                    f"({exc}): {current().advice}")
    worker = stack.pool_worker(stack_env, control_plane, POOL)
    yield worker
    worker.stop()


@pytest.fixture
def rest_pool(rest_worker, rest_work_root, tmp_path):
    """The shipped pipelines and pools, plus this pool (for the run's cluster) and its
    pipeline, loaded as an operator's files would be."""
    folder = stack.pipelines_with(tmp_path / "pipelines", {"e2e-echo-slurm-rest": PIPELINE})
    (folder / "pools" / f"{POOL}.yaml").write_text(f"""
name: {POOL}
target: slurm_rest
capacity: 4
settings:
  url: {current().url}
  user: {JOB_USER}
  token_file: {current().token_file}
  partition: main
  work_root: {rest_work_root}
""".lstrip())
    report = pipelines_load(folder)
    assert not report.errors, report.errors
    return POOL


@pytest.fixture
def rest_run(api, rest_pool):
    started: list[str] = []

    def post(**config) -> str:
        started.append(post_process(api, "e2e-echo-slurm-rest", config))
        return started[-1]

    yield post
    for pid in started:
        api.post(f"{PROCESSES}{pid}/stop/")  # a no-op for ended ones
        slurm("scancel", f"--name=orch-{pid}")


def test_health_shows_the_cluster_and_the_rest_version_before_any_run(api, rest_pool):
    """Nothing posted on this pool yet: the poll round's settings are enough."""
    def reported():
        cluster = api.get("/api/health/").json().get("pools", {}).get(POOL, {}).get("cluster")
        return cluster if cluster and cluster["rest_api_version"] else None

    cluster = wait_until(reported, 90, what=f"pool {POOL}'s cluster in /api/health/")
    assert cluster["reachable"] is True, cluster
    assert cluster["rest_api_version"] == current().rest_api_version
    pools = {p["name"]: p for p in api.get("/api/pools/").json()}
    assert pools[POOL]["status"] == "up"
    assert pools[POOL]["workers_alive"] == 1


def test_a_run_succeeds_with_its_log_and_a_failing_one_says_its_exit_code(api, rest_run):
    ok = rest_run(text="over REST")
    failing = rest_run(exit_code=3)
    process = wait_for_end(ok, timeout=120)
    assert process.state == State.SUCCEEDED, process.message
    assert "text: over REST" in logs_of(api, ok)
    # A job of a few milliseconds may end before anything sees it RUNNING.
    path = path_of(api, ok)
    assert path[:3] == ["PENDING", "QUEUED", "SUBMITTED"]
    assert path[-1] == "SUCCEEDED"
    assert path[3:-1] in ([], ["RUNNING"])
    process = wait_for_end(failing, timeout=120)
    assert (process.state, process.exit_code) == (State.FAILED, 3), process.message


def test_a_stop_ends_the_job_stopped(api, rest_run, slurm_job_state):
    pid = rest_run(seconds=120)
    running = wait_for_state(pid, State.RUNNING, timeout=120)
    job = running.handle.split(":")[0]
    assert api.post(f"{PROCESSES}{pid}/stop/").status_code == 200
    process = wait_for_end(pid, timeout=120)
    assert process.state == State.STOPPED, process.message
    wait_until(lambda: slurm_job_state(job) == "CANCELLED", 30,
               what=f"Slurm job {job} to be cancelled")
