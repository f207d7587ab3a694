from __future__ import annotations

import os
import shutil

import pytest

from tests.e2e import stack
from tests.work_roots import reachable_work_root
from workers.contract import CONTROL_QUEUE, host_queue, pool_queue, this_host


# The e2e stack lives for this folder's tests only ("package"): its relay admits and publishes
# every committed PENDING process of the test database, so left running it would take the runs
# of the later tests that record what their own relay round publishes.
@pytest.fixture(scope="package")
def stack_env(django_db_setup, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("stack")
    work_root = reachable_work_root("orch-e2e-work-")  # local jobs run as users of their own
    env = dict(os.environ)
    env.update(
        DATABASE_URL=stack.database_url(),
        ORCH_POLL_INTERVAL_S="0.5",
        ORCH_HEARTBEAT_INTERVAL_S="1",
        ORCH_LOST_GRACE_S="30",
        ORCH_WORK_ROOT=str(work_root),
        ORCH_STORAGE_URL=f"file://{run_dir / 'storage'}",  # not the checkout's var/storage
        ORCH_HOUSEKEEPING_INTERVAL_S="1",
        ORCH_WEBHOOK_ALLOW_PRIVATE="true",  # the tests' receivers listen on 127.0.0.1
        # Where signed data URLs point: the control consumer's relay builds the job specs, so
        # it must know the port the data tests' web server will listen on.
        ORCH_PUBLIC_URL=f"http://127.0.0.1:{stack.free_port()}",
        PYTHONUNBUFFERED="1",
    )
    stack.purge_queues([CONTROL_QUEUE, pool_queue("local"), host_queue("local", this_host())])
    stack.make_broker_users(env.get("ORCH_BROKER_URL", ""))  # each part connects as its role
    yield env, run_dir
    shutil.rmtree(work_root, ignore_errors=True)


@pytest.fixture(scope="package")
def control_plane(stack_env):
    env, run_dir = stack_env
    services = [stack.control_consumer(env, run_dir).start(), stack.beat(env, run_dir).start()]
    yield services
    for service in services:
        service.stop()


@pytest.fixture(scope="package")
def local_worker(stack_env, control_plane):
    env, run_dir = stack_env
    worker = stack.worker(env, run_dir).start()
    yield worker
    worker.stop()


@pytest.fixture
def work_root(stack_env):
    return stack_env[0]["ORCH_WORK_ROOT"]
