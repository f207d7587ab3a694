"""Slurm jobs run as the pool's user, never root, end to end: a run posted through the API
reaches a worker of the slurm-main pool that runs as root (as the dev set-up's does), and the
job it submits runs as the unprivileged user the pool names, in a run dir only that user
(and root) can enter."""

from __future__ import annotations

import os
import stat

import pytest

from tests.e2e import stack
from tests.e2e.client import wait_for_end, wait_for_log
from tests.executors.slurm_contract import slurm
from workers.contract import State

pytest_plugins = ["tests.e2e.slurm_fixtures"]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_a_slurm_job_runs_as_the_pools_user_not_as_the_root_worker(api, slurm_run,
                                                                   slurm_job_user):
    account = slurm_job_user
    assert account.pw_uid != 0
    assert os.geteuid() == 0, "the worker (started by this test process) must be root here"
    pid = slurm_run("e2e-whoami-slurm")
    process = wait_for_end(pid)
    assert process.state == State.SUCCEEDED, process.message
    assert process.exit_code == 0, process.message
    log = wait_for_log(api, pid, "uid=")
    assert f"uid={account.pw_uid} user={account.pw_name} " in log, log
    groups = log.split("groups=")[1].splitlines()[0].split()
    assert "0" not in groups  # nor in root's group
    job_id = process.handle.split(":")[0]
    owner = slurm("squeue", "-h", "--states=all", "-j", job_id, "-o", "%u").stdout.strip()
    assert owner in (account.pw_name, "")  # "": already forgotten by squeue
    run_dir = stack.ROOT / "var/work/slurm-main" / pid
    assert run_dir.stat().st_uid == account.pw_uid
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
