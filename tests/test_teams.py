"""Teams, roles and memberships (issue 17, first step): the team a process is submitted for,
the teams API, the commands, and the migration that gives every existing client a team."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from oauth2_provider.models import Application
from rest_framework.test import APIClient

from apps.processes.models import Process
from apps.processes.services import process_create
from apps.teams.models import Team, TeamClient, TeamMember
from apps.teams.roles import Role, role_at_least
from apps.teams.services import team_client_add, team_create, team_member_add

pytestmark = pytest.mark.django_db

PROCESSES = "/api/processes/"
TEAMS = "/api/teams/"


def create(api, **body):
    return api.post(PROCESSES, body, format="json")


def refused_naming_team(response) -> None:
    assert response.status_code == 400, response.content
    assert "team" in response.json()["fields"]


@pytest.fixture
def lab(db):
    return team_create(slug="lab", name="The lab")


# --- roles --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role, needed, granted", [
    (Role.VIEWER, Role.VIEWER, True), (Role.VIEWER, Role.OPERATOR, False),
    (Role.OPERATOR, Role.OPERATOR, True), (Role.ADMIN, Role.OPERATOR, True),
    (Role.OPERATOR, Role.ADMIN, False), ("admin", "viewer", True), ("", "viewer", False),
    ("owner", "viewer", False),
])
def test_role_at_least_orders_the_roles(role, needed, granted):
    assert role_at_least(role, needed) is granted


# --- submitting for a team ----------------------------------------------------------------------


def test_a_client_in_one_team_submits_for_it_by_default(make_client, pipelines):
    app, api = make_client("robot")
    response = create(api, pipeline="hello")
    assert response.status_code == 201, response.content
    assert response.json()["team"] == "robot"
    process = Process.objects.get(pk=response.json()["id"])
    assert process.team == TeamClient.objects.get(application=app).team
    assert api.get(f"{PROCESSES}{process.pk}/").json()["team"] == "robot"
    assert api.get(PROCESSES).json()["results"][0]["team"] == "robot"


def test_a_client_in_several_teams_names_one(make_client, pipelines, lab):
    app, api = make_client("robot")
    team_client_add(lab, app, Role.OPERATOR)
    refused_naming_team(create(api, pipeline="hello"))
    assert not Process.objects.exists()

    response = create(api, pipeline="hello", team="lab")
    assert response.status_code == 201, response.content
    assert response.json()["team"] == "lab"
    assert Process.objects.get().team == lab


def test_a_viewer_role_does_not_count_as_a_team_to_submit_for(make_client, pipelines, lab):
    app, api = make_client("robot")
    team_client_add(lab, app, Role.VIEWER)
    response = create(api, pipeline="hello")  # the one team it may submit for
    assert response.status_code == 201, response.content
    assert response.json()["team"] == "robot"


def refused_for_its_role(response) -> None:
    assert response.status_code == 403, response.content
    assert response.json()["detail"] == (
        "Submit needs the role operator or higher in the team; yours is viewer.")


@pytest.mark.parametrize("team", ["no-such-team", "other"])
def test_a_foreign_or_unknown_team_is_a_400_naming_team(make_client, pipelines, lab, team):
    app, api = make_client("robot")
    make_client("other")
    team_client_add(lab, app, Role.VIEWER)
    response = create(api, pipeline="hello", team=team)
    refused_naming_team(response)
    assert not Process.objects.exists()
    # The same words whether the team exists or not.
    message = response.json()["fields"]["team"][0]
    assert message.replace(team, "X") == (
        "Not a team you may submit for: 'X'; your teams are in GET /api/teams/, "
        "submitting needs the role operator or higher.")


def test_a_team_where_the_caller_is_a_viewer_is_a_403_naming_the_role(make_client, pipelines,
                                                                     lab):
    app, api = make_client("robot")
    TeamClient.objects.filter(application=app).delete()
    team_client_add(lab, app, Role.VIEWER)
    refused_for_its_role(create(api, pipeline="hello", team="lab"))
    refused_for_its_role(create(api, pipeline="hello"))  # its one team, unnamed
    assert not Process.objects.exists()


def test_a_team_of_the_wrong_type_is_a_400_naming_team(api):
    refused_naming_team(create(api, pipeline="hello", team=7))
    assert not Process.objects.exists()


def test_a_client_in_no_team_is_refused_naming_team(make_client, pipelines):
    app, api = make_client("robot")
    TeamClient.objects.filter(application=app).delete()
    refused_naming_team(create(api, pipeline="hello"))
    assert not Process.objects.exists()


def test_a_browser_user_submits_through_their_memberships(pipelines, django_user_model, lab):
    user = django_user_model.objects.create_user("ada", password="x", is_staff=True)
    browser = APIClient()
    browser.force_login(user)
    refused_naming_team(create(browser, pipeline="hello"))  # in no team
    team_member_add(lab, user, Role.VIEWER)
    refused_for_its_role(create(browser, pipeline="hello"))
    refused_for_its_role(create(browser, pipeline="hello", team="lab"))
    team_member_add(lab, user, Role.OPERATOR)
    response = create(browser, pipeline="hello")
    assert response.status_code == 201, response.content
    assert response.json()["team"] == "lab"
    assert Process.objects.count() == 1


def test_a_superuser_may_name_any_team(pipelines, admin_user, lab):
    browser = APIClient()
    browser.force_login(admin_user)
    response = create(browser, pipeline="hello", team="lab")
    assert response.status_code == 201, response.content
    assert response.json()["team"] == "lab"
    response = create(browser, pipeline="hello")  # in no team, naming none: no team
    assert response.status_code == 201, response.content
    assert response.json()["team"] is None


def test_a_rerun_keeps_the_team(pipelines, admin_user, lab):
    from apps.processes.services import process_rerun

    first, _ = process_create(pipeline="hello", used_config={}, owner=admin_user, team=lab)
    assert process_rerun(first, owner=admin_user).team == lab


# --- the teams API ------------------------------------------------------------------------------


def test_teams_lists_the_callers_teams_and_role(make_client, lab, django_user_model):
    app, api = make_client("robot")
    team_client_add(lab, app, Role.VIEWER)
    team_create(slug="elsewhere")
    body = api.get(TEAMS).json()
    assert body["count"] == 2
    assert [(t["slug"], t["role"]) for t in body["results"]] == [
        ("lab", "viewer"), ("robot", "operator")]
    assert body["results"][0]["name"] == "The lab"


def test_team_detail_lists_members_and_clients(make_client, lab, django_user_model):
    app, api = make_client("robot")
    team_client_add(lab, app, Role.ADMIN)
    team_member_add(lab, django_user_model.objects.create(username="ada"), Role.VIEWER)
    response = api.get(f"{TEAMS}lab/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["slug"] == "lab"
    assert body["role"] == "admin"
    assert body["members"] == [{"username": "ada", "role": "viewer"}]
    assert body["clients"] == [{"name": "robot", "client_id": app.client_id, "role": "admin"}]


@pytest.mark.parametrize("slug", ["lab", "nothing-here", "bad%20slug"])
def test_a_team_the_caller_is_not_in_is_a_404(make_client, lab, slug):
    _, api = make_client("robot")
    response = api.get(f"{TEAMS}{slug}/")
    assert response.status_code == 404
    assert "lab" not in response.content.decode()


def test_a_superuser_sees_every_team(admin_user, lab, make_client):
    make_client("robot")
    browser = APIClient()
    browser.force_login(admin_user)
    assert [t["slug"] for t in browser.get(TEAMS).json()["results"]] == ["lab", "robot"]
    body = browser.get(f"{TEAMS}robot/").json()
    assert body["role"] is None
    assert body["clients"][0]["role"] == "operator"


def test_teams_need_a_token_with_read(make_client, lab):
    assert APIClient().get(TEAMS).status_code == 401
    _, api = make_client("writer", scope="write")
    assert api.get(TEAMS).status_code == 403


# --- the commands -------------------------------------------------------------------------------


def test_create_team_and_a_client_in_it(capsys):
    call_command("create_team", "lab", "--name", "The lab")
    assert Team.objects.get(slug="lab").name == "The lab"
    assert capsys.readouterr().out == "team lab (The lab)\n"
    with pytest.raises(CommandError, match="exists already"):
        call_command("create_team", "lab")
    with pytest.raises(CommandError, match="slug"):
        call_command("create_team", "not a slug")

    call_command("create_client", "robot", "--team", "lab", "--role", "viewer",
                 "--format", "json")
    app = Application.objects.get(client_id=json.loads(capsys.readouterr().out)["client_id"])
    assert list(TeamClient.objects.filter(application=app).values_list("team__slug", "role")) \
        == [("lab", "viewer")]
    assert not Team.objects.filter(slug="robot").exists()


def test_create_client_without_a_team_makes_one_named_after_it(capsys):
    team_create(slug="robot")  # taken: the new team gets another slug
    call_command("create_client", "robot", "--format", "json")
    app = Application.objects.get(client_id=json.loads(capsys.readouterr().out)["client_id"])
    membership = TeamClient.objects.get(application=app)
    assert (membership.team.slug, membership.team.name, membership.role) == (
        "robot-2", "robot", "operator")


def test_create_client_for_an_unknown_team_creates_nothing():
    with pytest.raises(CommandError, match="no team 'lab'"):
        call_command("create_client", "robot", "--team", "lab")
    assert not Application.objects.exists()


# --- the migration ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # migrate runs its own transactions
def test_the_migration_puts_every_client_and_process_in_a_team(make_client, pipelines,
                                                               django_user_model):
    robot, _ = make_client("robot")
    twin, _ = make_client("Robot")  # the same slug: made unique
    make_client("idle")  # no process: its team all the same
    by_robot = process_create(pipeline="hello", used_config={}, application=robot)[0]
    by_twin = process_create(pipeline="hello", used_config={}, application=twin)[0]
    ada = django_user_model.objects.create(username="ada")
    by_ada = process_create(pipeline="hello", used_config={}, owner=ada)[0]
    # Before teams: no team, no membership.
    call_command("migrate", "processes", "0005", verbosity=0)
    with connection.cursor() as cursor:  # plain SQL: the models know a column gone now
        for model in (TeamClient, TeamMember, Team):
            cursor.execute(f"DELETE FROM {model._meta.db_table}")  # noqa: S608  # our names

    call_command("migrate", verbosity=0)  # every app: some depend on processes

    clients = dict(TeamClient.objects.values_list("application__name", "team__slug"))
    assert clients == {"robot": "robot", "Robot": "robot-2", "idle": "idle"}
    assert set(TeamClient.objects.values_list("role", flat=True)) == {"operator"}
    assert list(TeamMember.objects.values_list("user__username", "team__slug", "role")) == [
        ("ada", "ada", "operator")]
    teams = dict(Process.objects.values_list("pk", "team__slug"))
    assert teams == {by_robot.pk: "robot", by_twin.pk: "robot-2", by_ada.pk: "ada"}

    # Back and forward again: the same teams, none made twice.
    call_command("migrate", "processes", "0005", verbosity=0)
    call_command("migrate", verbosity=0)
    assert Team.objects.count() == 4
    assert dict(Process.objects.values_list("pk", "team__slug")) == teams


# --- the admin ----------------------------------------------------------------------------------


def test_the_admin_shows_a_team_with_its_members_and_clients_to_superusers_and_members_only(
    client, admin_user, django_user_model, make_client, lab
):
    app, _ = make_client("robot")
    team_client_add(lab, app, Role.OPERATOR)
    team_member_add(lab, django_user_model.objects.create(username="ada"), Role.VIEWER)
    client.force_login(admin_user)
    page = client.get(f"/admin/teams/team/{lab.pk}/change/")
    assert page.status_code == 200
    assert b"ada" in page.content
    assert b"Team clients" in page.content

    # Staff in no team, even with every permission on teams by hand: lab is not theirs to see.
    staff = django_user_model.objects.create(username="staff", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="teams"))
    client.force_login(staff)
    listing = client.get("/admin/teams/team/")
    assert listing.status_code in (200, 403)
    assert b"The lab" not in listing.content
    change = client.get(f"/admin/teams/team/{lab.pk}/change/")
    assert change.status_code in (302, 403, 404)
    assert b"ada" not in change.content
