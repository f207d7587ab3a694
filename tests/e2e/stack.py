"""Real processes of the product, started by tests: the control consumer, the beat and
workers, each a subprocess the test owns (stopped by its pid, never by name). On RabbitMQ each
connects as its role's broker user when deploy/broker-users.sh made them for the vhost, as
deploy/stack.sh starts them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

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


def broker_users(broker_url: str) -> dict[str, tuple[str, str]]:
    """Role -> (user, password) of deploy/broker-users.sh's file for the vhost of
    ``broker_url`` (``control``, ``pool.<name>``); empty when it is not RabbitMQ's or none
    was made."""
    if not broker_url.startswith(("amqp://", "amqps://", "pyamqp://")):
        return {}
    vhost = unquote(urlsplit(broker_url).path[1:]) or "/"
    path = ROOT / "var" / "broker-users" / re.sub(r"[^A-Za-z0-9_-]", "_", vhost)
    if not path.exists():
        return {}
    rows = (line.split() for line in path.read_text().splitlines() if not line.startswith("#"))
    return {row[0]: (row[1], row[2]) for row in rows if len(row) == 3}


def role_broker_url(broker_url: str, role: str) -> str:
    """``broker_url`` with the user and password of ``role``, or as it is when the role has
    no user (the embedded broker, a vhost without users, a pool a test made up)."""
    login = broker_users(broker_url).get(role)
    if login is None:
        return broker_url
    parts = urlsplit(broker_url)
    address = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{login[0]}:{login[1]}@{address}").geturl()


def make_broker_users(broker_url: str) -> None:
    """The role users of ``broker_url``'s vhost, made (or kept) by deploy/broker-users.sh, as
    deploy/services.sh makes them; nothing to do on the embedded broker."""
    if broker_url.startswith(("amqp://", "amqps://", "pyamqp://")):
        vhost = unquote(urlsplit(broker_url).path[1:]) or "/"
        subprocess.run([str(ROOT / "deploy" / "broker-users.sh"), vhost], check=True,
                       stdout=subprocess.DEVNULL)


def as_role(env: dict[str, str], role: str) -> dict[str, str]:
    """``env`` with the broker URL of ``role``: ``control`` or ``pool.<name>``."""
    return {**env, "ORCH_BROKER_URL": role_broker_url(env.get("ORCH_BROKER_URL", ""), role)}


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def web(env, log_dir, port: int) -> Service:
    """gunicorn on 127.0.0.1:``port``, as deploy/stack.sh starts it."""
    return Service(f"web-{port}", [
        sys.executable, "-m", "gunicorn", "orchestration.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", "1", "--threads", "4", "--access-logfile", "-",
    ], as_role(env, "control"), log_dir)


def control_consumer(env, log_dir) -> Service:
    return Service("control", [
        sys.executable, "-m", "celery", "-A", "orchestration", "worker", "--queues=control",
        "--pool=threads", "--concurrency=4", "--hostname=control@%h", "--without-gossip",
        "--without-mingle", "--loglevel=INFO",
    ], as_role(env, "control"), log_dir)


def beat(env, log_dir) -> Service:
    return Service("beat", [
        sys.executable, "-m", "celery", "-A", "orchestration", "beat", "--loglevel=INFO",
        f"--schedule={log_dir / 'beat-schedule'}",
    ], as_role(env, "control"), log_dir)


def worker(env, log_dir, pool: str = "local", name: str | None = None) -> Service:
    return Service(name or f"worker-{pool}", [sys.executable, "-m", "workers", "--pool", pool],
                   as_role(env, f"pool.{pool}"), log_dir)


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
