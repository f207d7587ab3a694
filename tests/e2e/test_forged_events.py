"""Events published by hand to ``control`` on the real broker, as an attacker with broker
access (or a job that read a worker's environment) would: a plain list of events as workers
sent before they signed, events signed with a made-up key, by a worker of another pool, by a
worker of another host, and a forged heartbeat. The running process they try to end changes
not at all, the control consumer counts each refusal where staff see it, and the real
worker's own events still apply. The worker itself holds no database URL and no master key."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.pipelines.models import RefusedReport, Worker
from apps.processes.models import Process
from orchestration.celery import app
from tests.e2e import stack
from tests.e2e.client import PROCESSES, logs_of, post_process, wait_for_end, wait_for_state
from tests.e2e.stack import wait_until
from tests.worker_reports import signed_events
from workers.contract import (
    CONTROL_QUEUE,
    TASK_APPLY_EVENTS,
    TASK_HEARTBEAT,
    Event,
    Heartbeat,
    State,
    this_host,
)
from workers.credential import derive
from workers.signing import Sender, master_keys

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

THIS_WORKER = f"local@{this_host()}"
NOT_FOR_WORKERS = ("DATABASE_URL", "SECRET_KEY", "DJANGO_SETTINGS_MODULE", "ORCH_SIGNING_KEYS",
                   "ORCH_WORKER_CREDENTIAL")


def environ_names(pid: int) -> set[str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return {entry.split(b"=", 1)[0].decode() for entry in raw.split(b"\0") if entry}


def publish(task: str, message) -> None:
    app.send_task(task, args=[message], queue=CONTROL_QUEUE)


def refused() -> dict[str, int]:
    return dict(RefusedReport.objects.values_list("reason", "count"))


def test_forged_events_change_nothing_while_the_workers_own_still_apply(api, local_worker,
                                                                        make_client):
    pid = post_process(api, "sleep", {"seconds": 120})
    wait_for_state(pid, State.RUNNING)
    wait_until(lambda: "slept 1 of" in logs_of(api, pid), what="the job's first log lines")
    before = Process.objects.get(pk=pid)

    ending = Event(process_id=pid, source=f"worker:{THIS_WORKER}", state=State.SUCCEEDED,
                   exit_code=0, log="all done, says the forger\n", log_offset=before.log_size,
                   log_end=before.log_size + 10_000)
    publish(TASK_APPLY_EVENTS, [ending.to_dict()])  # unsigned, as before events were signed
    publish(TASK_APPLY_EVENTS, signed_events([ending], Sender("local", THIS_WORKER),
                                             key=b"a key the forger made up"))
    publish(TASK_APPLY_EVENTS, signed_events([ending], Sender("docker-main",
                                                              f"docker-main@{this_host()}")))
    publish(TASK_APPLY_EVENTS, signed_events([ending], Sender("local", "local@elsewhere")))
    publish(TASK_HEARTBEAT, Heartbeat(pool="local", host="elsewhere", target="local",
                                      version="1", capacity=99, busy=0).to_dict())
    expected = {"events message: unsigned": 1, "events message: bad signature": 1,
                "event: a process of another pool": 1, "event: a job on another host": 1,
                "heartbeat message: unsigned": 1}
    wait_until(lambda: all(refused().get(r, 0) >= n for r, n in expected.items()), timeout=30,
               what=f"the control consumer to refuse {expected}, it counted {refused()}")

    process = Process.objects.get(pk=pid)
    assert process.state == State.RUNNING
    assert process.exit_code is None
    assert "forger" not in logs_of(api, pid)
    assert not Worker.objects.filter(host="elsewhere").exists()
    health = make_client("ops", staff=True)[1].get("/api/health/").json()
    assert health["refused"]["event: a process of another pool"]["count"] >= 1

    # The worker that holds the job is still believed: it stops it, under its own name.
    assert api.post(f"{PROCESSES}{pid}/stop/").status_code == 200
    assert wait_for_end(pid).state == State.STOPPED
    sources = dict(Process.objects.get(pk=pid).events.values_list("to_state", "source"))
    assert sources["RUNNING"] == sources["STOPPED"] == f"worker:{THIS_WORKER}"

    # And the worker holds none of the control plane's settings, though it was started with
    # DATABASE_URL and Django's settings in its environment (tests/e2e/conftest.py).
    assert "DATABASE_URL" in local_worker.env
    assert not environ_names(local_worker.pid) & set(NOT_FOR_WORKERS)


def test_a_worker_with_only_its_credential_runs_and_is_believed(api, stack_env, local_worker):
    """No master key in its reach: it verifies job specs with its pool's keys and signs its
    events with its own, and the control plane believes both."""
    env, run_dir = stack_env
    text = derive("local", f"only-cred@{this_host()}", master_keys(create=True)).to_text()
    env = {**{k: v for k, v in env.items() if k != "ORCH_SIGNING_KEYS"},
           "ORCH_SIGNING_KEY_FILE": str(run_dir / "no-such.key"),
           "ORCH_WORKER_CREDENTIAL": text, "LOG_LEVEL": "INFO"}
    worker = stack.worker(env, run_dir, pool="local", name="worker-only-cred")
    worker.argv += ["--name", "only-cred"]
    local_worker.stop()  # the only worker of the pool: every run goes to the new one
    worker.start()
    try:
        wait_until(lambda: " ready." in worker.output() or not worker.alive(), timeout=60,
                   what="the worker with a credential to be ready")
        assert worker.alive(), worker.output()[-3000:]
        assert not environ_names(worker.pid) & set(NOT_FOR_WORKERS)
        wait_until(lambda: Worker.objects.filter(name=f"only-cred@{this_host()}").exists(),
                   what="its signed heartbeat to be recorded")
        pid = post_process(api, "hello", {"name": "Credential"})
        assert wait_for_end(pid).state == State.SUCCEEDED
        sources = set(Process.objects.get(pk=pid).events.values_list("source", flat=True))
        assert f"worker:only-cred@{this_host()}" in sources
    finally:
        worker.stop()
        local_worker.start()
