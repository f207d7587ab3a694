"""Real processes of the product, started by tests: the web server, the control consumer, the
beat and workers (``testbed.parts``), each a subprocess the test owns (stopped by its pid,
never by name). On RabbitMQ each connects as its role's broker user when
deploy/broker-users.sh made them for the vhost, as deploy/stack.sh starts them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings

from testbed import parts
from testbed.services import ROOT, Service, free_port, wait_until  # noqa: F401 - tests use them


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
    split = urlsplit(broker_url)
    address = split.netloc.rpartition("@")[2]
    return split._replace(netloc=f"{login[0]}:{login[1]}@{address}").geturl()


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


def web(env, log_dir, port: int) -> Service:
    """The web server on 127.0.0.1:``port``, as deploy/stack.sh starts it, with one gunicorn
    worker process."""
    return parts.web(as_role(env, "control"), log_dir, port, name=f"web-{port}", workers=1)


def control_consumer(env, log_dir) -> Service:
    return parts.control_consumer(as_role(env, "control"), log_dir)


def beat(env, log_dir) -> Service:
    return parts.beat(as_role(env, "control"), log_dir)


def worker(env, log_dir, pool: str = "local", name: str | None = None) -> Service:
    """A worker of ``pool``, reaching the control plane's store (``ORCH_STORAGE_URL``, as
    deploy/stack.sh gives it) for datasets and outputs."""
    env = {**env, "ORCH_STORAGE_URL": env.get("ORCH_STORAGE_URL") or settings.DATA_STORAGE_URL}
    return parts.worker(as_role(env, f"pool.{pool}"), log_dir, pool, name=name)


def pool_worker(stack_env, control_plane, pool: str) -> Service:
    """A started worker of ``pool``, once the control consumer is ready (it loads the shipped
    pipelines as it starts, which would retire test pipelines loaded before)."""
    from workers.contract import host_queue, pool_queue, this_host

    env, run_dir = stack_env
    purge_queues([pool_queue(pool), host_queue(pool, this_host())])
    control_plane[0].wait_ready(60)
    # INFO: the tests read which submissions the worker answered from its log.
    return worker({**env, "LOG_LEVEL": "INFO"}, run_dir, pool=pool).start().wait_ready(60)


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
