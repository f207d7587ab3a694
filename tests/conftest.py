"""Fixtures shared by the control-plane tests: pipelines loaded from the shipped files, OAuth2
clients with tokens, and API clients that carry them.

And the suite's two rules about what a test needs:
- a test that needs no server (no database, no engine, no real jobs, not under tests/e2e or
  tests/drills) is marked ``unit`` here, from its fixtures and its path, so ``pytest -m unit``
  runs the developer's loop in seconds without PostgreSQL;
- an engine test whose engine is absent skips with the reason on a developer's machine, but in
  CI (``CI`` set) every skip is a failure: a green CI has run every test.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application
from rest_framework.test import APIClient

# What a test needs beyond its own process, read from the fixtures it uses (pytest-django's, or
# the test module's own of that name); a test that needs none of them is a unit test.
# (Not django_db_blocker: every test has it, through pytest-django's autouse fixtures.)
NEEDS_DATABASE = {"db", "transactional_db", "django_db_setup", "django_db_reset_sequences",
                  "django_db_serialized_rollback", "live_server", "admin_client", "admin_user"}
# The container engine, the Slurm cluster, moto's ECS emulator.
NEEDS_ENGINE = {"engine", "cluster", "emulator"}
# Real jobs on a target (the contract's fixture, local jobs included), the embedded broker under
# many processes at once, a wheel built and installed by pip: seconds each, not the quick loop.
NEEDS_PROCESSES = {"executor", "broker", "wheel"}
NEEDS_SOMETHING = NEEDS_DATABASE | NEEDS_ENGINE | NEEDS_PROCESSES
# Whole folders of tests that start the real control plane, workers or private services.
SERVER_FOLDERS = {"e2e", "drills"}


def is_unit_test(item: pytest.Item) -> bool:
    if SERVER_FOLDERS & set(Path(item.nodeid.split("::", 1)[0]).parts):  # relative to the root
        return False
    if item.get_closest_marker("django_db") or item.get_closest_marker("e2e"):
        return False
    return not set(getattr(item, "fixturenames", ())) & NEEDS_SOMETHING


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if is_unit_test(item):
            item.add_marker(pytest.mark.unit)


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def _fail_when_skipped_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    """In CI a skip hides a test that did not run (an engine that did not start): fail it."""
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _fail_when_skipped_in_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    _fail_when_skipped_in_ci(report)
    return report


@pytest.fixture(scope="session", autouse=True)
def _real_services_in_ci():
    """In CI the suite must run on PostgreSQL and RabbitMQ, never on the embedded default.
    Read from the settings, without connecting: unit tests reach no database."""
    if in_ci():
        from django.db import connection

        assert connection.vendor == "postgresql", "CI must test against PostgreSQL"
        assert os.environ.get("ORCH_BROKER_URL", "").startswith("amqp"), "CI must use RabbitMQ"


@pytest.fixture
def pipelines(db):
    from apps.pipelines.services import pipelines_load

    report = pipelines_load()
    assert "hello v1" in report.loaded + report.unchanged
    return report


@pytest.fixture
def make_client(db, django_user_model):
    """make_client(name, scope="read write", staff=False) -> (application, APIClient)."""

    def make(name: str, scope: str = "read write", staff: bool = False):
        user = django_user_model.objects.create(username=f"client-{name}", is_staff=staff)
        app = Application.objects.create(
            name=name, user=user, client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        )
        token = AccessToken.objects.create(
            application=app, token=f"token-{name}-{scope.replace(' ', '-')}", scope=scope,
            expires=timezone.now() + timedelta(hours=1),
        )
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
        return app, api

    return make


@pytest.fixture
def api(make_client, pipelines):
    """An API client of a fresh OAuth2 client with read and write scopes."""
    return make_client("alice")[1]
