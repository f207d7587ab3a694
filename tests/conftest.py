"""Fixtures shared by the control-plane tests: pipelines loaded from the shipped files, OAuth2
clients with tokens, and API clients that carry them."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application
from rest_framework.test import APIClient


@pytest.fixture(scope="session", autouse=True)
def _real_services_in_ci(django_db_setup, django_db_blocker):
    """In CI the suite must run on PostgreSQL and RabbitMQ, never on the embedded default."""
    if os.environ.get("CI"):
        from django.db import connection

        with django_db_blocker.unblock():
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
