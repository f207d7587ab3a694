"""The stack the Python client is tested against, through HTTP: gunicorn, a control consumer,
the beat and a worker of the local pool on the test database and broker, started and stopped
around this folder's module.

Its control consumer and worker have names of their own (``client-control``,
``local-client``): when tests/e2e's session stack is up in the same run, the two serve the same
queues side by side, as two control consumers and two workers of a pool on one host may."""

from __future__ import annotations

import os
import shutil

import pytest

from testbed import parts
from testbed.services import Service
from tests.client.support import web_server
from tests.e2e import stack
from tests.work_roots import reachable_work_root
from workers.contract import this_host


def named_worker(env: dict[str, str], log_dir, pool: str, name: str) -> Service:
    return Service(f"worker-{name}", [*parts.worker_argv(pool), "--name", name],
                   stack.as_role(env, f"pool.{pool}"), log_dir, ready=parts.CELERY_READY)


@pytest.fixture(scope="module")
def client_stack(django_db_setup, tmp_path_factory):
    """(url, web service, env): the whole product, served at url."""
    run_dir = tmp_path_factory.mktemp("client-stack")
    work_root = reachable_work_root("orch-client-work-")
    env = {**os.environ, "DATABASE_URL": stack.database_url(), "ORCH_POLL_INTERVAL_S": "0.5",
           "ORCH_HEARTBEAT_INTERVAL_S": "1", "ORCH_WORK_ROOT": str(work_root),
           "PYTHONUNBUFFERED": "1"}
    stack.make_broker_users(env.get("ORCH_BROKER_URL", ""))
    control = stack.as_role(env, "control")
    services = [parts.control_consumer(control, run_dir, name="client-control",
                                       hostname=f"client-control@{this_host()}"),
                parts.beat(control, run_dir, name="client-beat"),
                named_worker(env, run_dir, "local", "local-client")]
    try:
        for service in services:
            service.start()
        for service in services:
            service.wait_ready(90)
        with web_server(env, run_dir) as (url, web):
            yield url, web, env
    finally:
        for service in services:
            service.stop()
        shutil.rmtree(work_root, ignore_errors=True)
