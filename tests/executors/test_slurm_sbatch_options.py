"""sbatch options (issue 22) on the real one-node clusters, 22.05 and 24.11, through both Slurm
targets: a job submitted with a constraint, a task count, exclusive, mail settings, a working
directory and export rules gets each of them, as ``scontrol show job`` reads back from
slurmctld, and its command runs where and with what they say. The sbatch target uses each
release's own commands; the slurm_rest target speaks each API version the release's daemon
serves (22.05: v0.0.38; 24.11: v0.0.40, v0.0.41, v0.0.42), so each version's table of names
and shapes (rest_versions.py) meets a real daemon.

Needs ``deploy/slurm-cluster.sh start`` and ``deploy/slurm24-cluster.sh start`` first (their
nodes have the features ``orch,loopback``) and skips with that advice otherwise (a failure in
CI)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.executors.contract import ended, full_log, item_for, poll_until
from tests.executors.slurm_contract import (
    JOB_USER,
    cancel_named,
    current,
    new_spec,
    reachable_dir,
    require_cluster,
    slurm,
)
from workers.contract import State
from workers.executors.base import ExecutorError
from workers.executors.slurm.cli import SlurmExecutor
from workers.executors.slurm.handle import Handle
from workers.executors.slurm.rest import SlurmRestExecutor

pytestmark = pytest.mark.both_slurm_clusters
OPTIONS = {
    "constraint": "orch&loopback",
    "nodes": 1,
    "ntasks": 2,
    "cpus_per_task": 1,
    "exclusive": True,
    "mail_type": ["END", "FAIL", "TIME_LIMIT_90"],  # TIME=90% to slurmrestd after v0.0.38
    "mail_user": "ada@lab.example.org",
    "export": ["GREETING=hello from the pool", "FROM_SUBMIT_NODE"],
}
# What the job prints: where it runs, and what the export rules gave it.
COMMAND = ["sh", "-c", 'echo "cwd=$(pwd)"; echo "greeting=$GREETING"; '
                       'echo "from the submit node=$FROM_SUBMIT_NODE"']


@pytest.fixture(scope="module", autouse=True)
def cluster(slurm_cluster):
    require_cluster()
    if "orch" not in slurm("sinfo", "-h", "-o", "%f").stdout:
        pytest.skip(f"Slurm {slurm_cluster.release}'s node has no feature orch (an older "
                    f"slurm.conf): {slurm_cluster.advice}")
    return slurm_cluster


def executor_for(slurm_target: str, root: Path):
    """sbatch with the cluster's commands, or slurmrestd pinned to one API version."""
    cluster = current()
    settings = {"work_root": str(root), "partition": "main", "user": JOB_USER}
    if slurm_target == "slurm":
        return SlurmExecutor("slurm-test", {**settings, "bin_dir": cluster.bin_dir})
    version = slurm_target.split()[1]
    try:
        requests.get(f"{cluster.url}/openapi/v3", timeout=5)
    except requests.RequestException as exc:
        pytest.skip(f"slurmrestd does not answer on {cluster.url} ({exc}): {cluster.advice}")
    return SlurmRestExecutor("slurm-rest-test", {**settings, "url": cluster.url,
                                                 "token_file": cluster.token_file,
                                                 "api_version": version})


@pytest.fixture
def target(slurm_target):
    """The target's name (slurm or slurm_rest); ``slurm_target`` adds the API version."""
    return slurm_target.split()[0]


@pytest.fixture
def root():
    with reachable_dir() as path:
        yield path


@pytest.fixture
def make_spec(target):
    names: set[str] = set()

    def make(**fields):
        spec = new_spec("options", target, f"{target}-test", command=COMMAND, **fields)
        names.add(spec.job_name)
        return spec

    yield make
    cancel_named(names)


def shown(job_id: str) -> dict[str, str]:
    """``scontrol show job``'s KEY=VALUE pairs (values without spaces)."""
    text = slurm("scontrol", "show", "job", job_id).stdout
    return dict(re.findall(r"(\S+?)=(\S*)", text))


def test_the_job_gets_every_option_as_slurm_reads_it_back(slurm_target, root, make_spec,
                                                          monkeypatch):
    monkeypatch.setenv("FROM_SUBMIT_NODE", "the worker's own value")
    chdir = root / "project"  # a directory on the shared file system the job user reads
    chdir.mkdir(mode=0o755)
    executor = executor_for(slurm_target, root / "work")
    spec = make_spec(sbatch={**OPTIONS, "chdir": str(chdir)})
    handle = executor.submit(spec).handle
    job = shown(Handle.parse(handle).job_id)

    assert job["Features"] == "orch&loopback"
    assert job["NumTasks"] == "2"
    assert job["CPUs/Task"] == "1"
    assert job["NumNodes"] in ("1", "1-1")
    assert job["OverSubscribe"] == "NO"  # exclusive
    assert job["MailUser"] == "ada@lab.example.org"
    assert job["MailType"] == "END,FAIL,TIME_LIMIT_90"
    assert job["WorkDir"] == str(chdir)
    # The run dir keeps the job's files whatever its working directory.
    assert job["StdOut"] == str(executor.work_dir(spec.process_id) / "output.log")

    events = poll_until(executor, item_for(spec, handle), ended)
    assert events[-1].state == State.SUCCEEDED, full_log(events)
    log = full_log(events)
    assert f"cwd={chdir}" in log
    assert "greeting=hello from the pool" in log
    assert "from the submit node=the worker's own value" in log


def test_without_options_a_job_runs_in_its_run_dir_as_before(slurm_target, root,
                                                             make_spec):
    executor = executor_for(slurm_target, root / "work")
    spec = make_spec()
    handle = executor.submit(spec).handle
    job = shown(Handle.parse(handle).job_id)
    assert job["Features"] == "(null)"
    assert job["OverSubscribe"] == "OK"
    events = poll_until(executor, item_for(spec, handle), ended)
    assert events[-1].state == State.SUCCEEDED, full_log(events)
    assert f"cwd={executor.work_dir(spec.process_id)}" in full_log(events)


def test_a_feature_the_cluster_lacks_is_a_permanent_refusal(slurm_target, root,
                                                            make_spec):
    executor = executor_for(slurm_target, root / "work")
    with pytest.raises(ExecutorError) as refused:
        executor.submit(make_spec(sbatch={"constraint": "no-such-feature"}))
    assert refused.value.permanent, refused.value
    assert "feature" in str(refused.value).lower(), refused.value


def test_a_job_spec_with_a_bad_option_is_refused_before_slurm_sees_it(slurm_target, root,
                                                                      make_spec):
    executor = executor_for(slurm_target, root / "work")
    with pytest.raises(ExecutorError) as refused:
        executor.submit(make_spec(sbatch={"constraint": "a100\n#SBATCH --uid=0"}))
    assert refused.value.permanent
    assert "sbatch.constraint" in str(refused.value)
