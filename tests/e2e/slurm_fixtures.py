"""Fixtures of the slurm target's end-to-end tests: the Slurm cluster that
``deploy/slurm-cluster.sh start`` runs, a worker of the ``slurm-main`` pool (a subprocess the
tests own), test pipelines loaded next to the shipped ones, and, after every test, the
cancellation of every Slurm job its processes may have left.

Without a cluster that answers, or without the unprivileged user its jobs run as (the
shipped pool's ``user``, which the deploy script creates), every test skips with a message that
says how to start it (a failure in CI: tests/conftest.py).

Tests marked ``both_slurm_clusters`` run on Slurm 22.05 and on 24.11 (deploy/slurm24-cluster.sh),
whose commands the worker runs through ``ORCH_SLURM_BIN_DIR``; the others on 22.05 only."""

from __future__ import annotations

import pwd
import subprocess
from pathlib import Path

import pytest
import yaml

from apps.processes.models import Process
from tests.e2e import stack
from tests.e2e.client import post_process
from tests.executors.slurm_contract import CLUSTERS, Cluster
from workers.contract import is_terminal

POOL = "slurm-main"
START_ADVICE = 'Start it first, as root: eval "$(deploy/slurm-cluster.sh start)"'
# Who the shipped pool's jobs run as.
JOB_USER = yaml.safe_load((stack.ROOT / "pipelines/pools" / f"{POOL}.yaml").read_text())[
    "settings"]["user"]

# Pipelines only these tests run, loaded next to the shipped ones. Their config is read from
# the config file, as data: it never reaches a command line or the batch script.
_READ = "/usr/bin/python3 -c 'import json, os, sys; print(json.load(open(os.environ[\"ORCH_CONFIG_FILE\"]))[sys.argv[1]])' {key}"  # noqa: E501
TEST_PIPELINES = {
    "e2e-sleep-slurm": f"""
name: e2e-sleep-slurm
version: "1"
description: Prints a line a second for the given number of seconds (slurm e2e tests).
target: slurm
pool: {POOL}
run:
  command:
    - sh
    - -c
    - |
      seconds=$({_READ.format(key="seconds")})
      echo "started $ORCH_PROCESS_ID for $seconds s"
      i=0
      while [ "$i" -lt "$seconds" ]; do echo "tick $i"; sleep 1; i=$((i + 1)); done
      echo done
resources: {{cpus: 1, memory: 64M, time_limit: 10m}}
config_schema:
  type: object
  properties: {{seconds: {{type: integer, minimum: 0, maximum: 600}}}}
  required: [seconds]
  additionalProperties: false
defaults: {{seconds: 5}}
""",
    "e2e-exit-slurm": f"""
name: e2e-exit-slurm
version: "1"
description: Exits with the code from its config (slurm e2e tests).
target: slurm
pool: {POOL}
run:
  command:
    - sh
    - -c
    - |
      code=$({_READ.format(key="exit_code")})
      echo "exiting with $code"
      exit "$code"
resources: {{cpus: 1, memory: 64M, time_limit: 1m}}
config_schema:
  type: object
  properties: {{exit_code: {{type: integer, minimum: 0, maximum: 255}}}}
  required: [exit_code]
  additionalProperties: false
defaults: {{exit_code: 3}}
""",
    "e2e-timeout-slurm": f"""
name: e2e-timeout-slurm
version: "1"
description: Runs past its one-minute time limit (slurm e2e tests).
target: slurm
pool: {POOL}
run:
  command: [sh, -c, 'echo "started $ORCH_PROCESS_ID"; sleep 600; echo done']
resources: {{cpus: 1, memory: 64M, time_limit: 1m}}
""",
    "e2e-whoami-slurm": f"""
name: e2e-whoami-slurm
version: "1"
description: Says who it runs as (slurm e2e tests).
target: slurm
pool: {POOL}
run:
  command: [sh, -c, 'echo "uid=$(id -u) user=$(id -un) groups=$(id -G)"']
resources: {{cpus: 1, memory: 64M, time_limit: 1m}}
""",
    "e2e-options-slurm": f"""
name: e2e-options-slurm
version: "1"
description: Says how many tasks Slurm gave it; a run may set sbatch options (slurm e2e tests).
target: slurm
pool: {POOL}
run:
  command: [sh, -c, 'echo "tasks=$SLURM_NTASKS cwd=$(pwd)"']
resources: {{cpus: 1, memory: 64M, time_limit: 1m}}
sbatch: {{constraint: orch}}
allow: {{sbatch: [constraint, ntasks, mail_type, mail_user]}}
""",
    "e2e-echo-slurm": f"""
name: e2e-echo-slurm
version: "1"
description: Prints the text from its config between markers (slurm e2e tests).
target: slurm
pool: {POOL}
run:
  command:
    - sh
    - -c
    - |
      echo "<<<"
      {_READ.format(key="text")}
      echo ">>>"
resources: {{cpus: 1, memory: 64M, time_limit: 1m}}
config_schema:
  type: object
  properties: {{text: {{type: string, maxLength: 2000}}}}
  required: [text]
  additionalProperties: false
defaults: {{text: hello}}
""",
}


# The cluster of the session's slurm_release (its own holder: the executor tests' modules set
# theirs, and a session fixture outlives them).
_CURRENT = [CLUSTERS["22.05"]]


def current() -> Cluster:
    return _CURRENT[0]


def slurm(*argv: str) -> subprocess.CompletedProcess:
    """A Slurm command of the test, on the cluster the worker of this test uses."""
    return subprocess.run([current().command(argv[0]), *argv[1:]], capture_output=True,
                          text=True, timeout=30, check=False)


def pytest_generate_tests(metafunc):
    if "slurm_release" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_slurm_clusters") is not None
        releases = list(CLUSTERS) if both else ["22.05"]
        metafunc.parametrize("slurm_release", releases, indirect=True, scope="session")


@pytest.fixture(scope="session")
def slurm_release(request):
    """The Slurm release this test's worker and commands use."""
    _CURRENT[0] = CLUSTERS[request.param]
    yield request.param
    _CURRENT[0] = CLUSTERS["22.05"]


def _jobs_named(name: str) -> list[str]:
    """The ids of every job Slurm knows by this name: squeue (any state, while slurmctld still
    lists it) and the jobcomp accounting file (once it has forgotten it)."""
    ids = set()
    listed = slurm("squeue", "--noheader", "--states=all", f"--name={name}", "--format=%i")
    assert listed.returncode == 0, listed.stderr
    ids.update(listed.stdout.split())
    # sacct -c does not filter by --name: the names are compared here.
    done = slurm("sacct", "-c", "--noheader", "--parsable2", "--starttime=now-1hours",
                 "--format=JobID,JobName")
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        job_id, _, job_name = line.partition("|")
        if job_name == name and job_id.isdigit():
            ids.add(job_id)
    return sorted(ids)


def _state_of_job(job_id: str) -> str:
    """What squeue says of the job (any state), or "" once it has forgotten it."""
    listed = slurm("squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T")
    return listed.stdout.strip() if listed.returncode == 0 else ""


@pytest.fixture
def jobs_named():
    """jobs_named(name) -> the ids of every job Slurm knows by that name."""
    return _jobs_named


@pytest.fixture
def slurm_job_state():
    """slurm_job_state(job id) -> its Slurm state from squeue."""
    return _state_of_job


@pytest.fixture(scope="session")
def cluster(slurm_release) -> None:
    """A cluster whose controller and node answer; else a skipped test that says how to start
    it. The tests never restart or reconfigure it: others use it too."""
    ping = slurm("scontrol", "ping")
    nodes = slurm("sinfo", "--noheader", "--partition=main", "--format=%t")
    if ping.returncode != 0 or "UP" not in ping.stdout or not any(
        state.rstrip("*") in ("idle", "mix", "alloc") for state in nodes.stdout.split()
    ):
        pytest.skip(
            "no usable Slurm cluster (scontrol ping / sinfo -p main): "
            f"{(ping.stdout + ping.stderr + nodes.stdout + nodes.stderr).strip()!r}. "
            f"Slurm {slurm_release}: {current().advice}")
    try:
        pwd.getpwnam(JOB_USER)
    except KeyError:
        pytest.skip(f"no user {JOB_USER} for the {POOL} pool's jobs. {START_ADVICE}")


@pytest.fixture(scope="session")
def slurm_job_user(cluster) -> pwd.struct_passwd:
    """The account the shipped pool's jobs run as."""
    return pwd.getpwnam(JOB_USER)


@pytest.fixture(scope="package")
def slurm_worker(stack_env, control_plane, cluster):
    """A worker of the slurm-main pool, driving the commands of the test's Slurm release."""
    env, run_dir = stack_env
    if current().bin_dir:
        env = {**env, "ORCH_SLURM_BIN_DIR": current().bin_dir}
    worker = stack.pool_worker((env, run_dir), control_plane, POOL)
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def slurm_pipelines_dir(tmp_path_factory) -> Path:
    return stack.pipelines_with(tmp_path_factory.mktemp("pipelines"), TEST_PIPELINES)


@pytest.fixture
def slurm_run(api, slurm_worker, slurm_pipelines_dir):
    """slurm_run(pipeline, config) -> process id, posted through the API.

    After the test every Slurm job of its processes is cancelled (a no-op for ended ones), and
    a process the test left unfinished is stopped."""
    from apps.pipelines.services import pipelines_load

    report = pipelines_load(slurm_pipelines_dir)
    assert not report.errors, report.errors
    started: list[str] = []

    def post(pipeline: str, config: dict | None = None) -> str:
        started.append(post_process(api, pipeline, config))
        return started[-1]

    yield post

    for pid in started:
        if not is_terminal(Process.objects.get(pk=pid).state):
            api.post(f"/api/processes/{pid}/stop/")  # the test failed early: clean up only
        slurm("scancel", f"--name=orch-{pid}")
