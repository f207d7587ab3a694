"""Real processes of the product, started by tests: the control consumer, the beat and
workers, each a subprocess the test owns (stopped by its pid, never by name)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The database the test run uses (pytest-django's test database), for subprocesses."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        raise RuntimeError("end-to-end tests share the database with other processes: "
                           "run them on PostgreSQL (deploy/test.sh sets DATABASE_URL)")
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Service:
    """One subprocess with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Service:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal this service's process (and its group: the celery children it forked)."""
        if self.alive():
            os.killpg(self.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> Service:
        self.stop()
        return self.start()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def control_consumer(env, log_dir) -> Service:
    return Service("control", [
        sys.executable, "-m", "celery", "-A", "orchestration", "worker", "--queues=control",
        "--pool=threads", "--concurrency=4", "--hostname=control@%h", "--without-gossip",
        "--without-mingle", "--loglevel=INFO",
    ], env, log_dir)


def beat(env, log_dir) -> Service:
    return Service("beat", [
        sys.executable, "-m", "celery", "-A", "orchestration", "beat", "--loglevel=INFO",
        f"--schedule={log_dir / 'beat-schedule'}",
    ], env, log_dir)


def worker(env, log_dir, pool: str = "local", name: str | None = None) -> Service:
    return Service(name or f"worker-{pool}",
                   [sys.executable, "-m", "workers", "--pool", pool], env, log_dir)


def pool_worker(stack_env, control_plane, pool: str) -> Service:
    """A started worker of ``pool``, once the control consumer is ready (it loads the shipped
    pipelines as it starts, which would retire test pipelines loaded before)."""
    from workers.contract import host_queue, pool_queue, this_host

    env, run_dir = stack_env
    purge_queues([pool_queue(pool), host_queue(pool, this_host())])
    consumer = control_plane[0]
    wait_until(lambda: " ready." in consumer.output() or not consumer.alive(), timeout=60,
               what="the control consumer to be ready")
    assert consumer.alive(), consumer.output()[-3000:]
    # INFO: the tests read which submissions the worker answered from its log.
    started = worker({**env, "LOG_LEVEL": "INFO"}, run_dir, pool=pool).start()
    wait_until(lambda: " ready." in started.output() or not started.alive(), timeout=60,
               what=f"the {pool} worker to be ready")
    assert started.alive(), started.output()[-3000:]
    return started


def pipelines_with(folder: Path, test_pipelines: dict[str, str]) -> Path:
    """``folder`` filled with the shipped pipelines and pools plus the test pipelines: loading
    it retires nothing that the shipped directory holds."""
    shipped = ROOT / "pipelines"
    shutil.copytree(shipped / "pools", folder / "pools")
    for path in shipped.glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    for name, text in test_pipelines.items():
        (folder / f"{name}.yaml").write_text(text.lstrip())
    return folder


def purge_queues(names: list[str]) -> None:
    """Empty the test run's queues of anything an earlier, interrupted run left behind."""
    from orchestration.celery import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in names:
            try:
                channel.queue_purge(name)
            except Exception:  # a queue that does not exist yet holds nothing
                channel = conn.channel()


def wait_until(predicate, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
