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
NEEDS_ENGINE = {"engine", "cluster", "slurm_cluster", "emulator"}
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


@pytest.fixture(autouse=True, scope="session")
def _flush_survives_a_deadlock():
    """A transactional test's database is emptied (TRUNCATE) while the e2e control plane
    still writes to it (its relay, events, heartbeats); PostgreSQL may pick the TRUNCATE as a
    deadlock's victim, and the test would error in its teardown. Empty it again instead."""
    import time

    from django.db import OperationalError
    from django.db.backends.postgresql.operations import DatabaseOperations

    plain = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        for attempt in range(5):
            try:
                return plain(self, sql_list)
            except OperationalError as exc:
                if "deadlock detected" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return None

    patch = pytest.MonkeyPatch()
    patch.setattr(DatabaseOperations, "execute_sql_flush", execute_sql_flush)
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    """Every test checks its tokens anew: the fixtures' token strings repeat from test to
    test, and a token believed in one test must not carry its rolled-back user into the next."""
    from apps.accounts import token_cache

    token_cache.forget_all()


@pytest.fixture
def relay_on_wake(monkeypatch):
    """Each ``relay.wake()`` runs a relay round once its transaction commits, as the control
    consumer's relay soon would; the round hands each job spec to ``messaging.send_job_spec``
    (which tests record), and nothing waits for a broker's confirm."""
    from django.db import transaction

    from apps.processes import messaging, relay
    from apps.processes.spec_batches import SpecPublisher

    monkeypatch.setattr(relay, "wake", lambda: transaction.on_commit(relay.relay_round))
    monkeypatch.setattr(SpecPublisher, "publish",
                        lambda self, processes: [messaging.send_job_spec(p) for p in processes])


@pytest.fixture
def specs(monkeypatch, relay_on_wake) -> list:
    """The job specs (JobSpec) the relay round of each commit sends, in order (nothing
    reaches the broker)."""
    from apps.processes import messaging

    sent: list = []
    monkeypatch.setattr(messaging, "send_job_spec",
                        lambda process: sent.append(messaging.job_spec(process)))
    return sent


@pytest.fixture
def pipelines(db):
    from apps.pipelines.services import pipelines_load

    report = pipelines_load()
    assert "hello v1" in report.loaded + report.unchanged
    return report


@pytest.fixture
def make_client(db, django_user_model):
    """make_client(name, scope="read write", staff=False) -> (application, APIClient). The
    client is an operator of a team of its own, as ``create_client NAME`` makes it."""
    from apps.teams.services import operations_view_grant, team_client_add, team_create_named

    def make(name: str, scope: str = "read write", staff: bool = False):
        user = django_user_model.objects.create(username=f"client-{name}")
        if staff:  # sees workers and health details, as ``create_client --staff``
            operations_view_grant(user)
        app = Application.objects.create(
            name=name, user=user, client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        )
        team_client_add(team_create_named(name), app)
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
