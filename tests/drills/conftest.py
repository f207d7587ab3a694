"""Fixtures of the fault drills: one private PostgreSQL cluster and RabbitMQ node per session
(so restarting them touches nothing else on the machine), a migrated template database with a
staff OAuth2 client, and for each drill a fresh copy of it with the product's processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.drills.harness import DrillStack, Platform, manage
from tests.drills.infra import PrivatePostgres, PrivateRabbit
from tests.drills.local_backend import LocalBackend

RESULTS: list[dict] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "drill: a fault drill on private PostgreSQL and RabbitMQ")


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    started = time.monotonic()
    rabbit = PrivateRabbit(tmp_path_factory.mktemp("rabbitmq"))
    rabbit.start(wait=False)  # boots (a few seconds) while the database is made
    # Not under pytest's private tmp dir: the cluster's owner must be able to reach it.
    pg_base = Path(tempfile.mkdtemp(prefix="orch-drill-pg-"))
    postgres = PrivatePostgres(pg_base)
    try:
        postgres.init().start()
        postgres.create_database("drill_template")
        env = {**os.environ, "DATABASE_URL": postgres.url("drill_template"),
               "DJANGO_SETTINGS_MODULE": "orchestration.settings"}
        manage(env, "migrate", "--noinput", "-v0")
        client = json.loads(manage(env, "create_client", "drill", "--staff", "--format", "json"))
        rabbit.wait_ready()
        print(f"\ndrills: private PostgreSQL :{postgres.port} and RabbitMQ :{rabbit.port} "
              f"ready in {time.monotonic() - started:.1f} s")
        yield Platform(postgres, rabbit, "drill_template", client["client_id"],
                       client["client_secret"])
    finally:
        rabbit.close()
        postgres.stop("immediate")
        shutil.rmtree(pg_base, ignore_errors=True)


@pytest.fixture
def drill_for(platform, request, tmp_path):
    """drill_for(backend) -> a DrillStack named after the test. Its processes are stopped (by
    pid) and its leftovers on the target removed afterwards, whatever the drill's result."""
    stacks: list[DrillStack] = []

    def make(backend) -> DrillStack:
        name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
        stacks.append(DrillStack(name=name, platform=platform, backend=backend,
                                 run_dir=tmp_path))
        return stacks[-1]

    yield make
    for stack in stacks:
        stack.stop_all()
        stack.backend.cleanup()
        platform.postgres.drop_database(stack.database)


@pytest.fixture
def drill(drill_for, tmp_path):
    """A DrillStack for the local target."""
    return drill_for(LocalBackend(tmp_path))


@pytest.fixture
def record(request):
    """record(summary): keep a drill's figures for the session's summary."""

    def keep(summary: dict) -> None:
        summary["test"] = request.node.nodeid
        RESULTS.append(summary)

    return keep


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    terminalreporter.section("drills")
    for result in RESULTS:
        terminalreporter.write_line(
            f"{result['drill']}: {result['processes']} processes, {result['jobs']} jobs, "
            f"{result['states']}, {result['seconds']} s"
            + (f"; {result['fault']}" if result.get("fault") else ""))
    if path := os.environ.get("DRILL_REPORT"):
        Path(path).write_text(json.dumps(RESULTS, indent=1))

