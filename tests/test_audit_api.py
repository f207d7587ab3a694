"""The audit trail (issue 17): every submit, stop, re-run, client creation and revocation, role
change and member added or removed is recorded once, with who, which team, what, when and
from where; ``GET /api/audit/`` shows a team's entries to its admins only, newest first,
filtered by team, action and time, and nothing changes an entry."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from apps.audit.models import Action, AuditEntry
from apps.processes.services import process_create
from apps.teams.models import TeamClient
from apps.teams.roles import Role
from apps.teams.services import team_client_create, team_create, team_member_add

pytestmark = pytest.mark.django_db

AUDIT = "/api/audit/"
TEAMS = "/api/teams/"
PROCESSES = "/api/processes/"
ADDRESS = "203.0.113.7"
FIELDS = {"at", "actor", "team", "action", "target", "detail", "remote_addr"}


@pytest.fixture(autouse=True)
def _fast_hashes(settings):
    """Client secrets hashed quickly: what is tested is the trail, not PBKDF2."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def client_of(team, role, name: str, scope: str = "read write") -> APIClient:
    app, _ = team_client_create(team, name, role)
    token = AccessToken.objects.create(
        application=app, token=f"token-{name}-{scope.replace(' ', '-')}", scope=scope,
        expires=timezone.now() + timedelta(hours=1))
    api = APIClient(REMOTE_ADDR=ADDRESS)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    return api


@pytest.fixture
def teams(db):
    return team_create(slug="lab"), team_create(slug="other")


def ok(response, status: int = 200):
    assert response.status_code == status, response.content
    return response.json() if response.content else None


def test_each_action_is_recorded_once_with_who_where_and_from_where(teams, pipelines,
                                                                    django_user_model):
    lab, _ = teams
    boss = client_of(lab, Role.ADMIN, "boss")
    django_user_model.objects.create_user("ada", password="x")

    pid = ok(boss.post(PROCESSES, {"pipeline": "sleep", "used_config": {"seconds": 60}},
                       format="json"), 201)["id"]
    ok(boss.post(f"{PROCESSES}{pid}/stop/"))
    rerun = ok(boss.post(f"{PROCESSES}{pid}/rerun/"), 201)["id"]
    robot = ok(boss.post(f"{TEAMS}lab/clients/", {"name": "robot"}, format="json"), 201)
    ok(boss.patch(f"{TEAMS}lab/clients/{robot['client_id']}/", {"role": "viewer"},
                  format="json"))
    ok(boss.delete(f"{TEAMS}lab/clients/{robot['client_id']}/"), 204)
    ok(boss.post(f"{TEAMS}lab/members/", {"username": "ada"}, format="json"), 201)
    ok(boss.patch(f"{TEAMS}lab/members/ada/", {"role": "operator"}, format="json"))
    ok(boss.delete(f"{TEAMS}lab/members/ada/"), 204)

    entries = ok(boss.get(AUDIT))["results"]
    mine = [e for e in entries if e["actor"] == "client:boss"]
    assert Counter(e["action"] for e in mine) == {
        "submit": 1, "stop": 1, "re-run": 1, "client-create": 1, "client-revoke": 1,
        "role-change": 2, "member-add": 1, "member-remove": 1}
    for entry in mine:
        assert set(entry) == FIELDS
        assert (entry["team"], entry["remote_addr"]) == ("lab", ADDRESS), entry
    by_target = {(e["action"], e["target"]): e["detail"] for e in mine}
    assert ("submit", f"process {pid}") in by_target
    assert ("stop", f"process {pid}") in by_target
    assert ("re-run", f"process {rerun}") in by_target
    assert by_target[("role-change", f"client {robot['client_id']}")] == {
        "from": "operator", "to": "viewer"}
    assert by_target[("role-change", "member ada")] == {"from": "viewer", "to": "operator"}
    assert by_target[("client-create", f"client {robot['client_id']}")] == {
        "name": "robot", "role": "operator"}
    assert by_target[("client-revoke", f"client {robot['client_id']}")]["in_no_team"] is True
    # Newest first: the last thing done heads the list.
    assert mine[0]["action"] == "member-remove"
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
    # The trail itself holds each once, too (the API shows what is stored).
    assert AuditEntry.objects.filter(actor="client:boss").count() == len(mine) == 9


def test_a_refused_or_repeated_action_records_nothing(teams, pipelines):
    lab, _ = teams
    boss = client_of(lab, Role.ADMIN, "boss")
    viewer = client_of(lab, Role.VIEWER, "watcher")
    pid = ok(boss.post(PROCESSES, {"pipeline": "sleep", "used_config": {"seconds": 60}},
                       format="json"), 201)["id"]
    before = AuditEntry.objects.count()
    assert viewer.post(f"{PROCESSES}{pid}/stop/").status_code == 403
    assert viewer.post(f"{TEAMS}lab/clients/", {"name": "x"}, format="json").status_code == 403
    assert boss.post(f"{TEAMS}lab/clients/", {"name": "bad name"},
                     format="json").status_code == 400
    assert AuditEntry.objects.count() == before
    ok(boss.post(f"{PROCESSES}{pid}/stop/"))
    ok(boss.post(f"{PROCESSES}{pid}/stop/"))  # already stopped: nothing done, nothing recorded
    assert AuditEntry.objects.filter(action=Action.STOP).count() == 1


def test_a_team_admin_reads_only_their_teams_entries(teams, pipelines, admin_user):
    lab, other = teams
    lab_admin = client_of(lab, Role.ADMIN, "lab-boss")
    other_admin = client_of(other, Role.ADMIN, "other-boss")
    ok(lab_admin.post(PROCESSES, {"pipeline": "hello"}, format="json"), 201)
    ok(other_admin.post(PROCESSES, {"pipeline": "hello"}, format="json"), 201)
    process_create(pipeline="hello", used_config={})  # the system's, in no team

    seen_by_other = ok(other_admin.get(AUDIT))["results"]
    assert {e["team"] for e in seen_by_other} == {"other"}
    assert "lab-boss" not in str(seen_by_other)
    assert ok(other_admin.get(AUDIT, {"team": "lab"}))["results"] == []
    assert ok(lab_admin.get(AUDIT, {"team": "lab"}))["count"] == ok(lab_admin.get(AUDIT))["count"]

    superuser = APIClient()
    superuser.force_login(admin_user)
    everything = ok(superuser.get(AUDIT))
    assert everything["count"] == AuditEntry.objects.count()
    assert {e["team"] for e in everything["results"]} == {"lab", "other", None}
    system = [e for e in everything["results"] if e["team"] is None]
    assert [(e["actor"], e["remote_addr"]) for e in system] == [("system", None)]


@pytest.mark.parametrize("caller", ["operator", "viewer", "admin, read-only token", "no team",
                                    "member who is operator"])
def test_anyone_who_is_admin_of_no_team_is_refused_naming_admin(teams, caller,
                                                               django_user_model):
    lab, _ = teams
    if caller == "member who is operator":
        user = django_user_model.objects.create(username="ada")
        team_member_add(lab, user, Role.OPERATOR)
        api = APIClient()
        api.force_login(user)
    elif caller == "no team":
        api = client_of(None, Role.OPERATOR, "loner")
        TeamClient.objects.filter(application__name="loner").delete()
    else:
        role, scope = {"operator": (Role.OPERATOR, "read write"),
                       "viewer": (Role.VIEWER, "read write"),
                       "admin, read-only token": (Role.ADMIN, "read")}[caller]
        api = client_of(lab, role, "caller", scope)
    response = api.get(AUDIT)
    assert response.status_code == 403, response.content
    assert "admin" in response.json()["detail"]
    assert "lab" not in response.content.decode()


def test_filters_by_action_team_and_time(teams, pipelines):
    lab, _ = teams
    boss = client_of(lab, Role.ADMIN, "boss")
    ok(boss.post(PROCESSES, {"pipeline": "hello"}, format="json"), 201)
    ok(boss.post(f"{TEAMS}lab/clients/", {"name": "robot", "role": "viewer"}, format="json"),
       201)
    submits = ok(boss.get(AUDIT, {"action": "submit"}))["results"]
    assert [e["action"] for e in submits] == ["submit"]
    created = ok(boss.get(AUDIT, {"action": "client-create"}))["results"]
    assert {e["detail"]["name"] for e in created} == {"boss", "robot"}  # boss: by the system

    first = AuditEntry.objects.order_by("at").first()
    since = ok(boss.get(AUDIT, {"since": first.at.isoformat()}))
    assert since["count"] == AuditEntry.objects.filter(team=lab).count()
    later = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert ok(boss.get(AUDIT, {"since": later}))["results"] == []
    page = ok(boss.get(AUDIT, {"page_size": 1}))
    assert (len(page["results"]), page["count"]) == (1, 3)
    assert page["next"] is not None


@pytest.mark.parametrize("query, field", [
    ({"since": "yesterday"}, "since"),
    ({"since": ""}, "since"),
    ({"since": "2026-13-45T99:00:00Z"}, "since"),
    ({"action": "launch"}, "action"),
    ({"action": ""}, "action"),
    ({"page_size": "0"}, "page_size"),
])
def test_a_bad_filter_is_a_400_naming_it(teams, query, field):
    lab, _ = teams
    response = client_of(lab, Role.ADMIN, "boss").get(AUDIT, query)
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_audit_is_read_only(teams, admin_user, method):
    lab, _ = teams
    boss = client_of(lab, Role.ADMIN, "boss")
    superuser = APIClient()
    superuser.force_login(admin_user)
    before = list(AuditEntry.objects.values())
    for api in (boss, superuser):
        response = getattr(api, method)(AUDIT, {"action": "stop"}, format="json")
        assert response.status_code == 405, response.content
        entry = AuditEntry.objects.first()
        assert getattr(api, method)(f"{AUDIT}{entry.pk}/", {}, format="json").status_code == 404
    assert list(AuditEntry.objects.values()) == before
