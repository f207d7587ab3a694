"""A team's admins manage it through the API (issue 17): they create clients (the secret shown
once), revoke them, add and remove members and change roles; anyone else is refused (a 403
naming the role admin inside the team, a 404 outside it). A revocation or removal cuts access
on the very next request, and a team never loses its last admin."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, RefreshToken
from rest_framework.test import APIClient

from apps.audit.models import Action, AuditEntry
from apps.processes.models import Process
from apps.processes.services import process_create
from apps.teams.models import TeamClient, TeamMember
from apps.teams.roles import Role
from apps.teams.services import team_client_add, team_client_create, team_create, team_member_add

pytestmark = pytest.mark.django_db

TEAMS = "/api/teams/"
PROCESSES = "/api/processes/"
TOKEN = "/o/token/"


def client_of(team, role, name: str, scope: str = "read write"):
    """(application, APIClient with a token) of a new client made as the API makes one."""
    app, _ = team_client_create(team, name, role)
    token = AccessToken.objects.create(
        application=app, token=f"token-{name}-{scope.replace(' ', '-')}", scope=scope,
        expires=timezone.now() + timedelta(hours=1))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    return app, api


def session_of(user) -> APIClient:
    api = APIClient()
    api.force_login(user)
    return api


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def ask_token(client_id: str, secret: str):
    return APIClient().post(TOKEN, {"grant_type": "client_credentials"},
                            HTTP_AUTHORIZATION=basic(client_id, secret))


def role_of_client(app) -> str | None:
    return TeamClient.objects.filter(application=app, team__slug="lab").values_list(
        "role", flat=True).first()


@pytest.fixture(autouse=True)
def _fast_hashes(settings):
    """Secrets and passwords hashed quickly: a world of seven clients would spend seconds
    on PBKDF2's million rounds, and what is tested is who may do what, not the hasher."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def lab(db):
    return team_create(slug="lab", name="The lab")


@pytest.fixture
def world(lab, django_user_model, admin_user):
    """Team lab: an admin client (boss), an operator and a viewer client, an operator client
    ``robot`` and a viewer member ``ada`` to act on; team other with an admin of its own; a
    superuser; a user ``grace`` in no team, to be added."""
    other = team_create(slug="other")
    ada = django_user_model.objects.create_user("ada", password="x")
    team_member_add(lab, ada, Role.VIEWER)
    django_user_model.objects.create_user("grace", password="x")
    callers = {
        "admin": client_of(lab, Role.ADMIN, "boss")[1],
        "admin, read-only token": client_of(lab, Role.ADMIN, "boss-reader", "read")[1],
        "operator": client_of(lab, Role.OPERATOR, "op")[1],
        "viewer": client_of(lab, Role.VIEWER, "watcher")[1],
        "admin of another team": client_of(other, Role.ADMIN, "stranger")[1],
        "superuser": session_of(admin_user),
    }
    robot, _ = client_of(lab, Role.OPERATOR, "robot")
    return {"callers": callers, "robot": robot, "ada": ada}


# route -> (method, path, body, status when allowed)
ROUTES = {
    "create client": ("post", "lab/clients/", {"name": "new-robot", "role": "viewer"}, 201),
    "change client role": ("patch", "lab/clients/{robot}/", {"role": "viewer"}, 200),
    "revoke client": ("delete", "lab/clients/{robot}/", None, 204),
    "add member": ("post", "lab/members/", {"username": "grace", "role": "operator"}, 201),
    "change member role": ("patch", "lab/members/ada/", {"role": "operator"}, 200),
    "remove member": ("delete", "lab/members/ada/", None, 204),
}
CALLERS = ("admin", "admin, read-only token", "operator", "viewer", "admin of another team",
           "superuser")
CASES = [(route, caller) for route in ROUTES for caller in CALLERS]


def team_state(robot) -> dict:
    return {
        "clients": sorted(TeamClient.objects.filter(team__slug="lab").values_list(
            "application__name", "role")),
        "members": sorted(TeamMember.objects.filter(team__slug="lab").values_list(
            "user__username", "role")),
        "audit": AuditEntry.objects.exclude(actor="system").count(),
        "robot active": Application.objects.get(pk=robot.pk).user.is_active,
    }


@pytest.mark.parametrize("route, caller", CASES, ids=[f"{r} by {c}" for r, c in CASES])
def test_each_team_admin_route_answers_each_caller(world, route, caller):
    method, path, body, allowed = ROUTES[route]
    robot = world["robot"]
    before = team_state(robot)
    url = TEAMS + path.format(robot=robot.client_id)
    response = getattr(world["callers"][caller], method)(url, body, format="json")

    if caller in ("admin", "superuser"):
        assert response.status_code == allowed, response.content
        assert team_state(robot) != before
        assert AuditEntry.objects.exclude(actor="system").count() == before["audit"] + 1
        return
    if caller == "admin of another team":
        assert response.status_code == 404, response.content
        assert "robot" not in response.content.decode()
    elif caller == "admin, read-only token":
        assert response.status_code == 403, response.content
        assert "write" in response.json()["detail"]  # the scope it lacks
    else:
        assert response.status_code == 403, response.content
        detail = response.json()["detail"]
        assert "admin" in detail, detail  # the role needed, by name
        assert caller in detail, detail  # and the caller's own
    assert team_state(robot) == before  # a refusal changes nothing


# --- creating a client --------------------------------------------------------------------------


def test_a_new_clients_secret_is_shown_once_and_gets_a_token_that_submits(world, pipelines):
    admin = world["callers"]["admin"]
    response = admin.post(f"{TEAMS}lab/clients/", {"name": "new-robot"}, format="json")
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    created = response.json()
    assert set(created) == {"name", "client_id", "client_secret", "role", "team"}
    assert (created["name"], created["role"], created["team"]) == ("new-robot", "operator",
                                                                    "lab")

    team = admin.get(f"{TEAMS}lab/")
    listed = [c for c in team.json()["clients"] if c["name"] == "new-robot"]
    assert listed == [{"name": "new-robot", "client_id": created["client_id"],
                       "role": "operator"}]
    assert created["client_secret"] not in team.content.decode()
    stored = Application.objects.get(client_id=created["client_id"]).client_secret
    assert stored != created["client_secret"]  # only its hash is kept

    answer = ask_token(created["client_id"], created["client_secret"])
    assert answer.status_code == 200, answer.content
    robot = APIClient()
    robot.credentials(HTTP_AUTHORIZATION=f"Bearer {answer.json()['access_token']}")
    submitted = robot.post(PROCESSES, {"pipeline": "hello"}, format="json")
    assert submitted.status_code == 201, submitted.content
    assert submitted.json()["team"] == "lab"


@pytest.mark.parametrize("body, field, words", [
    ({}, "name", "required"),
    ({"name": ""}, "name", "blank"),
    ({"name": 7}, "name", "string"),
    ({"name": "robot"}, "name", "exists already"),  # the world's own robot
    ({"name": "two words"}, "name", "Letters, digits"),
    ({"name": "x" * 144}, "name", "143"),
    ({"name": "nul\x00byte"}, "name", "Null characters"),
    ({"name": "fresh", "role": "owner"}, "role", "viewer, operator, admin"),
    ({"name": "fresh", "role": ["admin"]}, "role", "viewer, operator, admin"),
    ({"name": "fresh", "rolle": "viewer"}, "rolle", "Unknown field"),
])
def test_creating_a_client_with_bad_input_is_a_400_naming_the_field(world, body, field, words):
    clients, audit = Application.objects.count(), AuditEntry.objects.count()
    response = world["callers"]["admin"].post(f"{TEAMS}lab/clients/", body, format="json")
    assert response.status_code == 400, response.content
    messages = response.json()["fields"][field]
    assert words in " ".join(messages), messages
    assert (Application.objects.count(), AuditEntry.objects.count()) == (clients, audit)


def test_a_name_whose_user_exists_is_refused(world, django_user_model):
    django_user_model.objects.create(username="client-taken", is_staff=True)
    response = world["callers"]["admin"].post(f"{TEAMS}lab/clients/", {"name": "taken"},
                                              format="json")
    assert response.status_code == 400, response.content
    assert "'client-taken' exists already" in response.json()["fields"]["name"][0]
    assert not Application.objects.filter(name="taken").exists()


def test_create_client_the_command_uses_the_same_service(lab, capsys):
    call_command("create_client", "cli-robot", "--team", "lab", "--role", "admin")
    out = capsys.readouterr().out
    app = Application.objects.get(name="cli-robot")
    assert app.client_id in out
    assert role_of_client(app) == "admin"
    entry = AuditEntry.objects.get(action=Action.CLIENT_CREATE, target=f"client {app.client_id}")
    assert (entry.actor, entry.team_slug, entry.detail) == (
        "system", "lab", {"name": "cli-robot", "role": "admin"})
    with pytest.raises(CommandError, match="exists already"):
        call_command("create_client", "cli-robot")
    with pytest.raises(CommandError, match="Letters, digits"):
        call_command("create_client", "two words")


# --- revoking a client and removing a member: at once -------------------------------------------


def test_a_revoked_client_in_no_team_is_refused_on_its_next_request(world, pipelines):
    admin = world["callers"]["admin"]
    response = admin.post(f"{TEAMS}lab/clients/", {"name": "doomed"}, format="json")
    creds = response.json()
    token = ask_token(creds["client_id"], creds["client_secret"]).json()
    doomed = APIClient()
    doomed.credentials(HTTP_AUTHORIZATION=f"Bearer {token['access_token']}")
    pid = doomed.post(PROCESSES, {"pipeline": "hello"}, format="json").json()["id"]
    assert doomed.get(f"{PROCESSES}{pid}/").status_code == 200

    revoked = admin.delete(f"{TEAMS}lab/clients/{creds['client_id']}/")
    assert revoked.status_code == 204, revoked.content

    assert doomed.get(f"{PROCESSES}{pid}/").status_code == 401  # the very next request
    app = Application.objects.get(client_id=creds["client_id"])
    assert not AccessToken.objects.filter(application=app).exists()
    assert not RefreshToken.objects.filter(application=app).exists()
    assert not app.user.is_active
    again = ask_token(creds["client_id"], creds["client_secret"])
    assert again.status_code == 401, again.content
    assert again.json()["error"] == "invalid_client"
    # Its process stays the team's, and the admin still sees it.
    assert admin.get(f"{PROCESSES}{pid}/").status_code == 200


def test_a_client_revoked_from_one_team_keeps_its_others(world, make_client, lab, pipelines):
    app, api = make_client("roamer")  # an operator of a team of its own, "roamer"
    team_client_add(lab, app, Role.OPERATOR)
    in_lab, _ = process_create(pipeline="hello", used_config={}, application=app, team=lab)
    assert api.get(f"{PROCESSES}{in_lab.pk}/").status_code == 200

    admin = world["callers"]["admin"]
    assert admin.delete(f"{TEAMS}lab/clients/{app.client_id}/").status_code == 204

    assert api.get(f"{PROCESSES}{in_lab.pk}/").status_code == 404  # the very next request
    assert [t["slug"] for t in api.get(TEAMS).json()["results"]] == ["roamer"]
    assert api.post(PROCESSES, {"pipeline": "hello"}, format="json").status_code == 201
    assert Application.objects.get(pk=app.pk).user.is_active


def test_a_removed_member_loses_the_team_on_their_next_request(world, lab, pipelines):
    process, _ = process_create(pipeline="hello", used_config={}, team=lab)
    ada = session_of(world["ada"])
    assert ada.get(f"{PROCESSES}{process.pk}/").status_code == 200
    assert world["callers"]["admin"].delete(f"{TEAMS}lab/members/ada/").status_code == 204
    assert ada.get(f"{PROCESSES}{process.pk}/").status_code == 404
    assert ada.get(f"{TEAMS}lab/").status_code == 404


def test_a_role_change_holds_from_the_next_request(world, lab, pipelines):
    process, _ = process_create(pipeline="sleep", used_config={"seconds": 60}, team=lab)
    operator = world["callers"]["operator"]
    op = Application.objects.get(name="op")
    changed = world["callers"]["admin"].patch(f"{TEAMS}lab/clients/{op.client_id}/",
                                              {"role": "viewer"}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json() == {"name": "op", "client_id": op.client_id, "role": "viewer"}
    stop = operator.post(f"{PROCESSES}{process.pk}/stop/")
    assert stop.status_code == 403
    assert "operator" in stop.json()["detail"]
    assert Process.objects.get(pk=process.pk).state != "STOPPED"


# --- members ------------------------------------------------------------------------------------


def test_an_admin_adds_a_member_who_then_sees_the_team(world):
    admin = world["callers"]["admin"]
    added = admin.post(f"{TEAMS}lab/members/", {"username": "grace", "role": "operator"},
                       format="json")
    assert added.status_code == 201, added.content
    assert added.json() == {"username": "grace", "role": "operator"}
    grace = session_of(get_user_model().objects.get(username="grace"))
    assert grace.get(f"{TEAMS}lab/").json()["role"] == "operator"
    changed = admin.patch(f"{TEAMS}lab/members/grace/", {"role": "admin"}, format="json")
    assert changed.json() == {"username": "grace", "role": "admin"}
    assert grace.get(f"{TEAMS}lab/").json()["role"] == "admin"


@pytest.mark.parametrize("body, field, words", [
    ({"username": "nobody"}, "username", "No active user"),
    ({"username": "sleeper"}, "username", "No active user"),  # inactive
    ({"username": "client-robot"}, "username", "No active user"),  # a client's stand-in
    ({"username": "ada"}, "username", "already"),
    ({"username": "nul\x00"}, "username", "Null characters"),
    ({}, "username", "required"),
    ({"username": "grace", "role": "boss"}, "role", "viewer, operator, admin"),
    ({"username": "grace", "team": "other"}, "team", "Unknown field"),
])
def test_adding_a_member_with_bad_input_is_a_400_naming_the_field(world, django_user_model,
                                                                  body, field, words):
    django_user_model.objects.create_user("sleeper", password="x", is_active=False)
    before = sorted(TeamMember.objects.values_list("team__slug", "user__username", "role"))
    response = world["callers"]["admin"].post(f"{TEAMS}lab/members/", body, format="json")
    assert response.status_code == 400, response.content
    assert words in " ".join(response.json()["fields"][field])
    assert sorted(TeamMember.objects.values_list("team__slug", "user__username", "role")) \
        == before


@pytest.mark.parametrize("method, path, body", [
    ("patch", "lab/members/ada/", {"role": "captain"}),
    ("patch", "lab/members/ada/", {}),
    ("patch", "lab/members/ada/", {"role": "admin", "note": "x"}),
    ("patch", "lab/clients/{robot}/", {"role": 3}),
])
def test_a_role_change_with_bad_input_is_a_400_and_changes_nothing(world, method, path, body):
    robot = world["robot"]
    before = team_state(robot)
    response = getattr(world["callers"]["admin"], method)(
        TEAMS + path.format(robot=robot.client_id), body, format="json")
    assert response.status_code == 400, response.content
    fields = response.json()["fields"]
    assert ("note" in fields) if "note" in body else ("role" in fields)
    if body.get("role") == "captain":
        assert fields["role"] == ["Not a role: 'captain'; a role is one of viewer, operator, "
                                  "admin."]
    assert team_state(robot) == before


@pytest.mark.parametrize("path", ["lab/members/grace/", "lab/members/nobody/",
                                  "lab/clients/no-such-client/", "lab/clients/{stranger}/",
                                  "nowhere/members/ada/"])
def test_someone_not_in_the_team_is_a_404(world, path):
    stranger = Application.objects.get(name="stranger")
    url = TEAMS + path.format(stranger=stranger.client_id)
    admin = world["callers"]["admin"]
    assert admin.patch(url, {"role": "viewer"}, format="json").status_code == 404
    assert admin.delete(url).status_code == 404
    assert role_of_client(stranger) is None


# --- the last admin -----------------------------------------------------------------------------


def test_the_last_admin_can_be_neither_removed_nor_demoted(world, admin_user):
    boss = Application.objects.get(name="boss")
    reader = Application.objects.get(name="boss-reader")
    admin, superuser = world["callers"]["admin"], world["callers"]["superuser"]
    # Two admin clients: one may go.
    assert admin.delete(f"{TEAMS}lab/clients/{reader.client_id}/").status_code == 204
    for api in (admin, superuser):  # not even a superuser leaves a team with no admin
        refused = api.delete(f"{TEAMS}lab/clients/{boss.client_id}/")
        assert refused.status_code == 409, refused.content
        assert "last admin" in refused.json()["detail"]
        demoted = api.patch(f"{TEAMS}lab/clients/{boss.client_id}/", {"role": "operator"},
                            format="json")
        assert demoted.status_code == 409, demoted.content
    assert role_of_client(boss) == "admin"

    # A member made admin: now the client may step down.
    assert admin.patch(f"{TEAMS}lab/members/ada/", {"role": "admin"},
                       format="json").status_code == 200
    assert admin.patch(f"{TEAMS}lab/clients/{boss.client_id}/", {"role": "viewer"},
                       format="json").status_code == 200
    ada = session_of(world["ada"])
    refused = ada.delete(f"{TEAMS}lab/members/ada/")
    assert refused.status_code == 409
    assert "last admin" in refused.json()["detail"]
    assert TeamMember.objects.get(user=world["ada"]).role == "admin"
    assert not AuditEntry.objects.filter(action=Action.MEMBER_REMOVE).exists()


def test_setting_the_same_role_again_changes_and_records_nothing(world):
    before = AuditEntry.objects.count()
    answer = world["callers"]["admin"].patch(f"{TEAMS}lab/members/ada/", {"role": "viewer"},
                                             format="json")
    assert answer.status_code == 200
    assert answer.json() == {"username": "ada", "role": "viewer"}
    assert AuditEntry.objects.count() == before
