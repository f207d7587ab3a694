"""Who may do what, route by route: every process route and the team and pool routes, for
every kind of caller, against a process of team ``a``. The table below is the README's table
of who may do what; a case that answers otherwise fails naming route and caller.

Callers are OAuth2 clients (TeamClient) and browser users on a session (TeamMember) in each
role of team ``a``, an operator of team ``b``, callers in no team, a token of an operator
client without the ``write`` scope, a staff user whose only Django permission is "view pool",
and a superuser."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from django.utils.text import slugify
from oauth2_provider.models import AccessToken, Application
from rest_framework.test import APIClient

from apps.processes.models import Process
from apps.processes.services import process_create
from apps.teams.roles import Role
from apps.teams.services import team_client_add, team_create, team_member_add
from workers.contract import State

pytestmark = pytest.mark.django_db

# caller -> (kind, team, role, scope)
CALLERS = {
    "client a viewer": ("client", "a", Role.VIEWER, "read write"),
    "client a operator": ("client", "a", Role.OPERATOR, "read write"),
    "client a admin": ("client", "a", Role.ADMIN, "read write"),
    "client a operator, read-only token": ("client", "a", Role.OPERATOR, "read"),
    "client b operator": ("client", "b", Role.OPERATOR, "read write"),
    "client in no team": ("client", None, None, "read write"),
    "user a viewer": ("user", "a", Role.VIEWER, None),
    "user a operator": ("user", "a", Role.OPERATOR, None),
    "user a admin": ("user", "a", Role.ADMIN, None),
    "user b operator": ("user", "b", Role.OPERATOR, None),
    "user in no team": ("user", None, None, None),
    "staff, may only view pools": ("staff", None, None, None),
    "superuser": ("superuser", None, None, None),
}

# route -> (method, path, body)
ROUTES = {
    "list": ("get", "/api/processes/", None),
    "detail": ("get", "/api/processes/{pid}/", None),
    "status": ("get", "/api/processes/{pid}/status/", None),
    "events": ("get", "/api/processes/{pid}/events/", None),
    "logs": ("get", "/api/processes/{pid}/logs/", None),
    "stop": ("post", "/api/processes/{pid}/stop/", None),
    "re-run": ("post", "/api/processes/{pid}/rerun/", None),
    "delete": ("delete", "/api/processes/{pid}/", None),
    "submit for a": ("post", "/api/processes/", {"pipeline": "hello", "team": "a"}),
    "team a": ("get", "/api/teams/a/", None),
    "teams": ("get", "/api/teams/", None),
    "pools": ("get", "/api/pools/", None),
}

IN_A = ("client a viewer", "client a operator", "client a admin",
        "client a operator, read-only token", "user a viewer", "user a operator",
        "user a admin", "superuser")
OPERATES_A = ("client a operator", "client a admin", "user a operator", "user a admin",
              "superuser")
READ_ONLY_IN_A = ("client a viewer", "client a operator, read-only token", "user a viewer")


def expected(route: str, caller: str) -> int:
    """The status the table promises."""
    if route in ("list", "teams", "pools"):
        return 200  # everyone lists; what the list holds is checked by ``sees``
    if route == "submit for a":
        if caller in READ_ONLY_IN_A:
            return 403  # in the team, the role (or the token) too low: the 403 names it
        return 201 if caller in OPERATES_A else 400  # not its team: 400 naming `team`
    if caller not in IN_A:
        return 404  # outside the caller's teams: never a 403, which would confirm it
    if route in ("stop", "re-run", "delete") and caller in READ_ONLY_IN_A:
        return 403  # seen, but the role (or the token) is too low: the 403 names it
    if route == "delete":
        return 409  # the process is live: it must be stopped and finished first
    return 201 if route == "re-run" else 200


CASES = [(route, caller) for route in ROUTES for caller in CALLERS]


def _client_of(name: str, team, role, scope: str) -> APIClient:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create(username=f"client-{name}")
    app = Application.objects.create(
        name=name, user=user, client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS)
    if team is not None:
        team_client_add(team, app, role)
    token = AccessToken.objects.create(application=app, token=f"token-{slugify(name)}",
                                       scope=scope, expires=timezone.now() + timedelta(hours=1))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    return api


def _session_of(name: str, kind: str, team, role) -> APIClient:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create(  # no password: a session needs none to be forced
        username=slugify(name),
        is_staff=kind != "user" or team is not None, is_superuser=kind == "superuser")
    if kind == "staff":
        user.user_permissions.add(Permission.objects.get(codename="view_pool"))
    if team is not None:
        team_member_add(team, user, role)
    api = APIClient()
    api.force_login(user)
    return api


@pytest.fixture
def world(pipelines, settings):
    # Client secrets are hashed on save: a fast hasher keeps 13 callers per case cheap.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    teams = {"a": team_create(slug="a"), "b": team_create(slug="b")}
    process, _ = process_create(pipeline="sleep", used_config={"seconds": 60}, team=teams["a"])
    callers = {}
    for name, (kind, team, role, scope) in CALLERS.items():
        team = teams[team] if team else None
        callers[name] = (_client_of(name, team, role, scope) if kind == "client"
                         else _session_of(name, kind, team, role))
    return process, callers


@pytest.mark.parametrize("route, caller", CASES, ids=[f"{r} by {c}" for r, c in CASES])
def test_who_may_do_what(world, route, caller):
    process, callers = world
    method, path, body = ROUTES[route]
    api = callers[caller]
    url = path.format(pid=process.pk)
    response = (api.get(url) if method == "get" else api.delete(url) if method == "delete"
                else api.post(url, body, format="json"))
    assert response.status_code == expected(route, caller), response.content
    answer = response.json()
    if response.status_code == 403 and route in ("stop", "re-run", "delete"):
        if caller == "client a operator, read-only token":
            assert "'write'" in answer["detail"]  # the scope it lacks, by name
        else:
            assert "operator" in answer["detail"]  # the role the action needs, by name
    if response.status_code == 400:
        assert "team" in answer["fields"]
    if response.status_code == 404:
        assert str(process.pk) not in response.content.decode()
    _check_what_it_saw_and_changed(route, caller, process, response)


def _check_what_it_saw_and_changed(route, caller, process, response) -> None:
    answer = response.json()
    sees = caller in IN_A
    if route == "list":
        assert [p["id"] for p in answer["results"]] == ([str(process.pk)] if sees else [])
    if route == "teams":
        assert ("a" in [t["slug"] for t in answer["results"]]) is sees
    if route == "pools":  # counts of one's own teams only; workers for operations alone
        local = next(p for p in answer if p["name"] == process.pool)
        assert ("workers" in local) is (caller == "superuser")
    moved = Process.objects.get(pk=process.pk)
    if route == "stop":
        assert (moved.state == State.STOPPED) is (response.status_code == 200)
    else:
        assert moved.state != State.STOPPED
    if route == "re-run" and response.status_code == 201:
        assert Process.objects.get(pk=answer["id"]).team_id == process.team_id
    if route in ("re-run", "submit for a"):
        assert Process.objects.count() == (2 if response.status_code == 201 else 1)
    if route == "delete":  # nobody deletes a live process
        assert Process.objects.filter(pk=process.pk).exists()
