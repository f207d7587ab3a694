"""A bearer token django-oauth-toolkit accepted is believed for TOKEN_CACHE_TTL_S by the web
process that checked it: a token revoked by another process works at most that long after,
an expired one fails at once, and the process that revokes forgets at once. The clock is the
cache's own, moved by the test: nothing here waits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from oauth2_provider.models import AccessToken

from apps.accounts import token_cache

pytestmark = pytest.mark.django_db

PROCESSES = "/api/processes/"


@pytest.fixture
def clock(monkeypatch):
    """The cache's clock, at 1000 s until a test moves it."""
    now = [1000.0]
    monkeypatch.setattr(token_cache, "_clock", lambda: now[0])
    return now


@pytest.fixture
def robot(make_client, pipelines, settings):
    settings.TOKEN_CACHE_TTL_S = 5
    app, api = make_client("robot")
    return AccessToken.objects.get(application=app), api


def revoked_elsewhere(token: AccessToken) -> None:
    """The token deleted as another web process's revocation would: this process hears no
    signal of it."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {AccessToken._meta.db_table} WHERE id = %s",  # noqa: S608
                       [token.pk])


def test_a_token_revoked_elsewhere_works_at_most_the_ttl_longer(robot, clock):
    token, api = robot
    assert api.get(PROCESSES).status_code == 200
    revoked_elsewhere(token)
    clock[0] += 4.9
    assert api.get(PROCESSES).status_code == 200  # believed: checked 4.9 s ago
    clock[0] += 0.1
    assert api.get(PROCESSES).status_code == 401  # TOKEN_CACHE_TTL_S old: asked again


def test_an_expired_token_fails_at_once(robot, clock, monkeypatch):
    token, api = robot
    assert api.get(PROCESSES).status_code == 200
    later = token.expires + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert api.get(PROCESSES).status_code == 401  # within the TTL, yet past its expiry


def test_the_process_that_revokes_forgets_at_once(robot, clock):
    token, api = robot
    assert api.get(PROCESSES).status_code == 200
    token.delete()  # the revoke endpoint, the admin, a client removed from its last team
    assert api.get(PROCESSES).status_code == 401


def test_a_user_made_inactive_here_is_refused_at_once(robot, clock):
    token, api = robot
    assert api.get(PROCESSES).status_code == 200
    user = token.application.user
    user.is_active = False
    user.save()
    assert api.get(PROCESSES).status_code == 401


def test_no_cache_with_a_ttl_of_zero(robot, clock, settings):
    token, api = robot
    settings.TOKEN_CACHE_TTL_S = 0
    assert api.get(PROCESSES).status_code == 200
    revoked_elsewhere(token)
    assert api.get(PROCESSES).status_code == 401


def test_the_cache_holds_no_token_in_the_clear(robot, clock):
    token, api = robot
    assert api.get(PROCESSES).status_code == 200
    assert token.token not in token_cache._entries
    assert len(token_cache._entries) == 1
