"""Promise 7 on Slurm, end to end: a secret posted through the API reaches the job's environment
through RabbitMQ, a real worker of the slurm-main pool and sbatch, by a 0600 file in the run dir
that is gone once the job has ended; no log, answer or work file holds it."""

from __future__ import annotations

import hashlib
import secrets

import pytest

from apps.pipelines.services import pipelines_load
from apps.processes.models import Process
from tests.e2e import stack
from tests.e2e.client import PROCESSES, wait_for_end, wait_for_log
from tests.executors.slurm_contract import slurm
from workers.contract import State
from workers.secrets import DEFAULT_KEY_FILE

pytest_plugins = ["tests.e2e.slurm_fixtures"]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

POOL = "slurm-main"  # the pool of tests.e2e.slurm_fixtures' worker

PIPELINE = f"""
name: e2e-secret-slurm
version: "1"
description: Prints the SHA-256 of its DRILL_TOKEN, never the token (slurm e2e tests).
target: slurm
pool: {POOL}
secrets: [DRILL_TOKEN]
run:
  command: [sh, -c, 'printf %s "$DRILL_TOKEN" | sha256sum']
resources: {{cpus: 1, memory: 64M, time_limit: 1m}}
"""


@pytest.fixture
def secret_pipeline(slurm_worker, tmp_path):
    folder = stack.pipelines_with(tmp_path, {"e2e-secret-slurm": PIPELINE})
    report = pipelines_load(folder)
    assert "e2e-secret-slurm v1" in report.loaded, report


@pytest.fixture
def workers_key(stack_env, monkeypatch):
    """Seal with the key the worker opens with (its ORCH_SECRETS_KEY, or its key file)."""
    env = stack_env[0]
    if "ORCH_SECRETS_KEY" not in env and "ORCH_SECRETS_KEYS" not in env:
        key_file = stack.ROOT / env.get("ORCH_SECRETS_KEY_FILE", DEFAULT_KEY_FILE)
        monkeypatch.setenv("ORCH_SECRETS_KEY_FILE", str(key_file))


def test_a_slurm_job_gets_its_secret_from_a_file_that_is_gone_after_it(
    api, secret_pipeline, workers_key, slurm_worker, control_plane
):
    token = f"drill-{secrets.token_hex(16)}"
    response = api.post(PROCESSES, {"pipeline": "e2e-secret-slurm",
                                    "secrets": {"DRILL_TOKEN": token}}, format="json")
    assert response.status_code == 201, response.content
    pid = response.json()["id"]
    try:
        process = wait_for_end(pid)
    finally:
        slurm("scancel", f"--name=orch-{pid}")
    assert process.state == State.SUCCEEDED, process.message

    log = wait_for_log(api, pid, hashlib.sha256(token.encode()).hexdigest())
    assert token not in log
    for url in (f"{PROCESSES}{pid}/", f"{PROCESSES}{pid}/events/"):
        assert token not in api.get(url).content.decode()
    for service in (slurm_worker, *control_plane):
        assert token not in service.output(), f"the {service.name} log holds the secret"
    run_dir = stack.ROOT / "var/work/slurm-main" / pid
    assert not (run_dir / "secrets.env").exists()
    for path in run_dir.rglob("*"):
        assert not path.is_file() or token.encode() not in path.read_bytes(), path
    assert Process.objects.get(pk=pid).exit_code == 0
