"""Promise 7 end to end: a secret posted through the API reaches the job's environment through
RabbitMQ and a real worker of the local pool, and no log, answer or work file holds it; its
sealed text moved to another process starts nothing."""

from __future__ import annotations

import hashlib
import secrets
import shutil
from pathlib import Path

import pytest
from django.db import transaction

from apps.pipelines.services import pipelines_load
from apps.processes.models import Process
from apps.processes.services import process_create
from tests.e2e import stack
from tests.e2e.stack import wait_until
from workers.contract import State, is_terminal
from workers.secrets import DEFAULT_KEY_FILE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

PROCESSES = "/api/processes/"
# Prints a digest of its secret, so the test can prove the job got it without it being shown.
PIPELINE = """
name: secret-digest
description: Prints the SHA-256 of its DRILL_TOKEN, never the token itself.
target: local
pool: local
secrets: [DRILL_TOKEN]
run:
  command:
    - python3
    - -c
    - |
      import hashlib, os
      print("sha256", hashlib.sha256(os.environ["DRILL_TOKEN"].encode()).hexdigest())
resources: {cpus: 1, memory: 128M, time_limit: 1m}
"""


@pytest.fixture
def secret_pipeline(api, client, local_worker, tmp_path):
    """The shipped pipelines plus secret-digest, loaded once the control consumer has loaded
    the shipped ones at its start (which retires any other): a live worker on the health page
    is a heartbeat that consumer applied."""
    wait_until(lambda: client.get("/api/health/").json()["pools"].get("local", {}).get("workers"),
               what="the control consumer and a worker of the local pool")
    shipped = stack.ROOT / "pipelines"
    shutil.copytree(shipped / "pools", tmp_path / "pools")
    for path in shipped.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "secret-digest.yaml").write_text(PIPELINE.lstrip())
    report = pipelines_load(tmp_path)
    assert "secret-digest v1" in report.loaded, report


@pytest.fixture
def workers_key(stack_env, monkeypatch):
    """Seal here with the key the worker opens with: its ORCH_SECRETS_KEY, or its key file,
    found from the directory the worker runs in."""
    env = stack_env[0]
    if "ORCH_SECRETS_KEY" not in env:
        key_file = stack.ROOT / env.get("ORCH_SECRETS_KEY_FILE", DEFAULT_KEY_FILE)
        monkeypatch.setenv("ORCH_SECRETS_KEY_FILE", str(key_file))


def test_the_job_gets_its_secret_and_nothing_shows_it(
    api, secret_pipeline, workers_key, local_worker, control_plane, work_root
):
    token = f"drill-{secrets.token_hex(16)}"
    response = api.post(PROCESSES, {"pipeline": "secret-digest",
                                    "secrets": {"DRILL_TOKEN": token}}, format="json")
    assert response.status_code == 201, response.content
    pid = response.json()["id"]
    wait_until(lambda: is_terminal(Process.objects.get(pk=pid).state), what=f"{pid} to end")
    process = Process.objects.get(pk=pid)
    assert process.state == State.SUCCEEDED, process.message

    digest = hashlib.sha256(token.encode()).hexdigest()
    log = wait_until(lambda: (t := api.get(f"{PROCESSES}{pid}/logs/").json()["text"])
                     and digest in t and t, what="the job's digest of its secret")
    assert token not in log
    for url in (f"{PROCESSES}{pid}/", f"{PROCESSES}{pid}/events/", f"{PROCESSES}{pid}/status/"):
        assert token not in api.get(url).content.decode()
    for service in (local_worker, *control_plane):
        assert token not in service.output(), f"the {service.name} log holds the secret"
    for path in (Path(work_root) / pid).rglob("*"):
        assert not path.is_file() or token.encode() not in path.read_bytes(), path


def test_a_sealed_secret_moved_to_another_process_starts_nothing(
    api, secret_pipeline, workers_key, local_worker, control_plane, work_root
):
    """The attack of a database write (or a bug) that copies one run's sealed secrets into
    another's row before its job spec is signed: the worker refuses to open them, the run ends
    FAILED saying why, and its job never starts."""
    token = f"drill-{secrets.token_hex(16)}"
    response = api.post(PROCESSES, {"pipeline": "secret-digest",
                                    "secrets": {"DRILL_TOKEN": token}}, format="json")
    assert response.status_code == 201, response.content
    owner = Process.objects.get(pk=response.json()["id"])
    with transaction.atomic():  # its job spec goes out once this commits
        other, _ = process_create(pipeline="secret-digest", used_config={})
        other.secret_env = owner.secret_env
        Process.objects.filter(pk=other.pk).update(secret_env=owner.secret_env)

    for pid in (owner.pk, other.pk):
        wait_until(lambda pid=pid: is_terminal(Process.objects.get(pk=pid).state),
                   what=f"{pid} to end")
    assert Process.objects.get(pk=owner.pk).state == State.SUCCEEDED
    moved = Process.objects.get(pk=other.pk)
    assert moved.state == State.FAILED
    assert "sealed for another process" in moved.message
    assert token not in moved.message
    assert moved.handle == ""
    assert moved.log_size == 0  # nothing was started
    assert not (Path(work_root) / str(other.pk)).exists()
    assert token not in local_worker.output()


def test_a_worker_given_only_what_worker_credential_prints_opens_its_pools_secrets(
    api, secret_pipeline, workers_key, local_worker, stack_env
):
    """The operator's set-up for a worker on another host: the two lines `manage.py
    worker_credential` prints, and no master key (signing or secrets) within its reach."""
    import io

    from django.core.management import call_command

    from workers.contract import this_host

    env, run_dir = stack_env
    identity = f"cred-only@{this_host()}"
    out = io.StringIO()
    call_command("worker_credential", "--pool", "local", "--worker", identity, stdout=out)
    given = dict(line.split("=", 1) for line in out.getvalue().splitlines())
    assert set(given) == {"ORCH_WORKER_CREDENTIAL", "ORCH_POOL_SECRETS_KEYS"}
    masters = ("ORCH_SIGNING_KEYS", "ORCH_SECRETS_KEYS", "ORCH_SECRETS_KEY")
    worker_env = {**{k: v for k, v in env.items() if k not in masters}, **given,
                  "ORCH_SIGNING_KEY_FILE": str(run_dir / "no-such-signing.key"),
                  "ORCH_SECRETS_KEY_FILE": str(run_dir / "no-such-secrets.key"),
                  "LOG_LEVEL": "INFO"}
    worker = stack.worker(worker_env, run_dir, pool="local", name="worker-cred-only")
    worker.argv += ["--name", "cred-only"]
    local_worker.stop()  # the only worker of the pool: the run goes to the new one
    worker.start()
    try:
        wait_until(lambda: " ready." in worker.output() or not worker.alive(), timeout=60,
                   what="the worker with only its credential to be ready")
        assert worker.alive(), worker.output()[-3000:]
        environ = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
        assert not {e.split(b"=")[0].decode() for e in environ if e} & set(masters)
        token = f"drill-{secrets.token_hex(16)}"
        response = api.post(PROCESSES, {"pipeline": "secret-digest",
                                        "secrets": {"DRILL_TOKEN": token}}, format="json")
        assert response.status_code == 201, response.content
        pid = response.json()["id"]
        wait_until(lambda: is_terminal(Process.objects.get(pk=pid).state), what=f"{pid} to end")
        process = Process.objects.get(pk=pid)
        assert process.state == State.SUCCEEDED, process.message
        digest = hashlib.sha256(token.encode()).hexdigest()
        wait_until(lambda: digest in api.get(f"{PROCESSES}{pid}/logs/").json()["text"],
                   what="the job's digest of its secret")
    finally:
        worker.stop()
        local_worker.start()
