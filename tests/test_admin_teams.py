"""The admin keeps to teams: a staff member lists, opens, stops, re-runs and deletes only their
teams' processes, as their role there allows (Django's permissions come from that role, with
none granted by hand); a team admin manages their team's members and clients, each change
audited once; the audit is read-only. Users: a superuser; staff who are viewer, operator and
admin of team ``a``; an operator of team ``b``; staff in no team; staff whose only Django
permission is "view pool"."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from oauth2_provider.models import Application

from apps.audit.models import Action, AuditEntry
from apps.processes.models import Process
from apps.processes.services import process_create
from apps.teams.models import TeamClient, TeamMember
from apps.teams.roles import Role
from apps.teams.services import team_client_add, team_create, team_member_add
from workers.contract import State

pytestmark = pytest.mark.django_db

PROCESSES = "/admin/processes/process/"
TEAMS = "/admin/teams/team/"
AUDIT = "/admin/audit/auditentry/"

# user -> the teams whose processes they see
SEES = {
    "root": {"a", "b"},
    "viewer_a": {"a"},
    "operator_a": {"a"},
    "admin_a": {"a"},
    "operator_b": {"b"},
    "nobody": set(),
    "pool_viewer": set(),
}
# user -> the teams whose processes they may stop, re-run and delete
OPERATES = {"root": {"a", "b"}, "operator_a": {"a"}, "admin_a": {"a"}, "operator_b": {"b"}}


@pytest.fixture
def teams(db):
    return {"a": team_create(slug="a"), "b": team_create(slug="b")}


@pytest.fixture
def users(teams, django_user_model):
    made = {"root": django_user_model.objects.create_superuser("root", password="x")}
    for name, team, role in (("viewer_a", "a", Role.VIEWER), ("operator_a", "a", Role.OPERATOR),
                             ("admin_a", "a", Role.ADMIN), ("operator_b", "b", Role.OPERATOR)):
        made[name] = django_user_model.objects.create_user(name, password="x", is_staff=True)
        team_member_add(teams[team], made[name], role)
    made["nobody"] = django_user_model.objects.create_user("nobody", password="x",
                                                           is_staff=True)
    made["pool_viewer"] = django_user_model.objects.create_user("pool_viewer", password="x",
                                                                is_staff=True)
    made["pool_viewer"].user_permissions.add(Permission.objects.get(
        content_type__app_label="pipelines", codename="view_pool"))
    return made


@pytest.fixture
def processes(teams, users, pipelines):
    """Per team: a live process (``a_live``) and a finished one (``a_done``)."""
    made = {}
    for slug, team in teams.items():
        made[f"{slug}_live"], _ = process_create(pipeline="sleep", used_config={"seconds": 5},
                                                 owner=users["root"], team=team)
        made[f"{slug}_done"], _ = process_create(pipeline="hello", used_config={},
                                                 owner=users["root"], team=team)
    Process.objects.filter(pk__in=[made["a_done"].pk, made["b_done"].pk]).update(
        state=State.SUCCEEDED)
    return made


def login(client, users, name):
    client.force_login(users[name])
    return client


def state(process) -> str:
    process.refresh_from_db()
    return process.state


def post_action(client, action, *processes, **extra):
    return client.post(PROCESSES, {"action": action,
                                   "_selected_action": [p.pk for p in processes], **extra},
                       follow=True)


def messages_of(response) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


# --- the process list, pages and actions --------------------------------------------------------

@pytest.mark.parametrize("name", SEES)
def test_the_process_changelist_shows_only_the_callers_teams(client, users, processes, name):
    page = login(client, users, name).get(PROCESSES)
    shown = {key for key, process in processes.items() if str(process.pk) in page.content.decode()}
    assert shown == {key for key in processes if key[0] in SEES[name]}
    if SEES[name]:
        assert page.status_code == 200
        assert page.context["cl"].result_count == 2 * len(SEES[name])
    else:  # no role anywhere: no "view process" permission, no list at all
        assert page.status_code == 403


def test_the_team_filter_lists_only_the_callers_teams(client, users, processes):
    page = login(client, users, "operator_a").get(PROCESSES).content.decode()
    assert f"team__id__exact={processes['a_live'].team_id}" in page
    assert f"team__id__exact={processes['b_live'].team_id}" not in page
    page = client.get(PROCESSES, {"team__id__exact": processes["b_live"].team_id})
    assert str(processes["b_live"].pk) not in page.content.decode()


@pytest.mark.parametrize("name", ["viewer_a", "operator_b", "nobody", "pool_viewer"])
def test_another_teams_process_page_is_not_shown(client, users, processes, name):
    other = processes["b_done"] if name.endswith("_a") else processes["a_done"]
    page = login(client, users, name).get(f"{PROCESSES}{other.pk}/change/")
    if SEES[name]:  # Django's answer for an object it does not find: back to the index
        assert (page.status_code, page["Location"]) == (302, "/admin/")
    else:  # no role anywhere: no process page at all
        assert page.status_code == 403
    assert str(other.pk) not in page.content.decode()
    assert login(client, users, "root").get(f"{PROCESSES}{other.pk}/change/").status_code == 200


def test_a_viewer_opens_their_teams_process_read_only(client, users, processes):
    page = login(client, users, "viewer_a").get(f"{PROCESSES}{processes['a_done'].pk}/change/")
    assert page.status_code == 200
    assert "PENDING" in page.content.decode()  # its event history
    assert 'name="_save"' not in page.content.decode()
    assert "/delete/" not in page.content.decode()


@pytest.mark.parametrize("name", ["viewer_a", "operator_b", "nobody", "operator_b_viewer_a"])
def test_a_process_pages_log_stop_and_rerun_keep_to_the_callers_teams_and_role(
        client, users, teams, processes, name):
    """The log, stop and re-run of a process's page: 404 outside the caller's teams; a viewer
    reads the log and has no button; stop and re-run change nothing unless the caller operates
    the process's team."""
    if name == "operator_b_viewer_a":
        team_member_add(teams["a"], users["operator_b"], Role.VIEWER)
        name = "operator_b"
    live = processes["a_live"]
    login(client, users, name)
    before = Process.objects.count()
    log = client.get(f"{PROCESSES}{live.pk}/log/")
    stop = client.post(f"{PROCESSES}{live.pk}/stop/")
    rerun = client.post(f"{PROCESSES}{live.pk}/rerun/")
    sees = "a" in {t.team.slug for t in TeamMember.objects.filter(user=users[name])}
    if not sees:
        assert (log.status_code, stop.status_code, rerun.status_code) == (404, 404, 404)
    elif name == "viewer_a":
        assert log.status_code == 200
        assert (stop.status_code, rerun.status_code) == (403, 403)
        page = client.get(f"{PROCESSES}{live.pk}/change/").content.decode()
        assert 'id="stop-process"' not in page
        assert 'id="rerun-process"' not in page
    else:  # operator elsewhere, viewer here: told it was skipped
        assert log.status_code == 200
        assert "Skipped 1 process(es)" in messages_of(client.get(stop["Location"]))
    assert state(live) != State.STOPPED
    assert Process.objects.count() == before


@pytest.mark.parametrize("name", SEES)
def test_stop_on_a_selection_of_both_teams_stops_only_what_the_caller_operates(
        client, users, processes, name):
    login(client, users, name)
    post_action(client, "stop", processes["a_live"], processes["b_live"])
    stopped = {key[0] for key in ("a_live", "b_live") if state(processes[key]) == State.STOPPED}
    assert stopped == OPERATES.get(name, set())
    entries = AuditEntry.objects.filter(action=Action.STOP)
    assert sorted(entries.values_list("team_slug", flat=True)) == sorted(stopped)
    assert set(entries.values_list("actor", flat=True)) <= {f"user:{name}"}


def test_stop_skips_and_reports_processes_of_teams_where_the_caller_only_views(
        client, users, teams, processes):
    team_member_add(teams["b"], users["operator_a"], Role.VIEWER)
    page = post_action(login(client, users, "operator_a"), "stop",
                       processes["a_live"], processes["b_live"])
    assert "Skipped 1 process(es) of teams where you are not operator" in messages_of(page)
    assert "Stopped 1 process(es) before they reached their target: " \
        f"{str(processes['a_live'].pk)[:8]}." in messages_of(page)
    assert state(processes["a_live"]) == State.STOPPED
    assert state(processes["b_live"]) != State.STOPPED


def test_viewers_have_no_stop_or_rerun_action(client, users, processes):
    page = login(client, users, "viewer_a").get(PROCESSES).content.decode()
    assert 'value="stop"' not in page
    assert 'value="rerun"' not in page
    assert 'value="delete_selected"' not in page
    page = login(client, users, "operator_a").get(PROCESSES).content.decode()
    assert 'value="stop"' in page
    assert 'value="rerun"' in page


@pytest.mark.parametrize("name", SEES)
def test_rerun_of_both_teams_runs_only_what_the_caller_operates_in_the_originals_team(
        client, users, processes, name):
    before = set(Process.objects.values_list("pk", flat=True))
    post_action(login(client, users, name), "rerun", processes["a_done"], processes["b_done"])
    new = Process.objects.exclude(pk__in=before)
    assert sorted(new.values_list("team__slug", flat=True)) == sorted(OPERATES.get(name, set()))
    assert all(p.owner == users[name] and p.pipeline.name == "hello" for p in new)
    assert AuditEntry.objects.filter(action=Action.RERUN).count() == new.count()


@pytest.mark.parametrize("name", SEES)
def test_bulk_delete_deletes_only_finished_processes_the_caller_operates_each_audited(
        client, users, processes, name):
    selected = [processes[key] for key in ("a_done", "b_done", "a_live")]
    login(client, users, name)
    post_action(client, "delete_selected", *selected, post="yes")
    gone = {key[0] for key in ("a_done", "b_done")
            if not Process.objects.filter(pk=processes[key].pk).exists()}
    assert gone == OPERATES.get(name, set())
    assert Process.objects.filter(pk=processes["a_live"].pk).exists()  # live: never deleted
    entries = AuditEntry.objects.filter(action=Action.DELETE)
    assert sorted(entries.values_list("team_slug", flat=True)) == sorted(gone)
    assert set(entries.values_list("target", flat=True)) == {
        f"process {processes[f'{slug}_done'].pk}" for slug in gone}


def test_a_process_delete_page_needs_an_operator_of_its_team(client, users, processes):
    done = processes["a_done"]
    assert login(client, users, "viewer_a").post(
        f"{PROCESSES}{done.pk}/delete/", {"post": "yes"}).status_code == 403
    assert login(client, users, "operator_b").post(
        f"{PROCESSES}{done.pk}/delete/", {"post": "yes"}).status_code == 302  # not found
    assert Process.objects.filter(pk=done.pk).exists()
    login(client, users, "operator_a").post(f"{PROCESSES}{done.pk}/delete/", {"post": "yes"})
    assert not Process.objects.filter(pk=done.pk).exists()
    entry = AuditEntry.objects.get(action=Action.DELETE)
    assert (entry.actor, entry.team_slug, entry.target) == (
        "user:operator_a", "a", f"process {done.pk}")


def test_staff_with_only_the_view_pool_permission_sees_pools_and_no_process(
        client, users, processes):
    login(client, users, "pool_viewer")
    assert client.get("/admin/pipelines/pool/").status_code == 200
    assert client.get(PROCESSES).status_code == 403
    post_action(client, "stop", processes["a_live"], processes["b_live"])
    assert state(processes["a_live"]) != State.STOPPED
    assert state(processes["b_live"]) != State.STOPPED


def test_permissions_follow_the_role_and_end_with_the_account(users):
    viewer, operator, admin = users["viewer_a"], users["operator_a"], users["admin_a"]
    assert viewer.has_perm("processes.view_process")
    assert not viewer.has_perm("processes.stop_process")
    assert operator.has_perm("processes.stop_process")
    assert operator.has_perm("processes.rerun_process")
    assert not operator.has_perm("teams.change_teammember")
    assert admin.has_perm("teams.change_teammember")
    assert admin.has_perm("audit.view_auditentry")
    assert not admin.has_perm("teams.add_team")
    assert not admin.has_perm("pipelines.view_worker")  # running the service is another right
    assert not users["nobody"].has_perm("processes.view_process")
    admin.is_active = False
    admin.save()
    fresh = type(admin).objects.get(pk=admin.pk)
    assert not fresh.has_perm("processes.view_process")


# --- teams --------------------------------------------------------------------------------------

def form_data(page) -> dict:
    """What the browser would send back for a team's change page, unchanged."""
    data: dict = {}
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = value
        for form in formset.forms:
            for name, field in form.fields.items():
                value = form.initial.get(name, field.initial)
                if name != "DELETE" and value is not None:
                    data[form.add_prefix(name)] = value
    return data


def row_of(data: dict, prefix: str, pk: int) -> str:
    """The form prefix (``members-2``) of the row holding object ``pk``."""
    return next(key[:-3] for key, value in data.items()
                if key.startswith(prefix) and key.endswith("-id") and value == pk)


@pytest.fixture
def client_a(teams, django_user_model):
    user = django_user_model.objects.create(username="client-robot")
    app = Application.objects.create(name="robot", user=user,
                                     client_type=Application.CLIENT_CONFIDENTIAL,
                                     authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS)
    return team_client_add(teams["a"], app, Role.OPERATOR)


def test_a_team_admin_adds_a_member_changes_a_role_and_removes_a_client_each_audited_once(
        client, users, teams, client_a, django_user_model):
    django_user_model.objects.create_user("newcomer", password="x")
    login(client, users, "admin_a")
    url = f"{TEAMS}{teams['a'].pk}/change/"
    data = form_data(client.get(url))
    viewer = TeamMember.objects.get(user=users["viewer_a"])
    data[f"{row_of(data, 'members', viewer.pk)}-role"] = Role.OPERATOR
    empty = f"members-{data['members-INITIAL_FORMS']}"
    data.update({f"{empty}-username": "newcomer", f"{empty}-role": Role.VIEWER})
    data[f"{row_of(data, 'clients', client_a.pk)}-DELETE"] = "on"
    saved = client.post(url, data)
    assert saved.status_code == 302, saved.context["inline_admin_formsets"][0].formset.errors

    viewer.refresh_from_db()
    assert viewer.role == Role.OPERATOR
    assert TeamMember.objects.get(user__username="newcomer").team == teams["a"]
    assert not TeamClient.objects.filter(pk=client_a.pk).exists()
    entries = {entry.action: entry for entry in AuditEntry.objects.all()}
    assert AuditEntry.objects.count() == 3
    assert entries[Action.ROLE_CHANGE].detail == {"from": "viewer", "to": "operator"}
    assert entries[Action.ROLE_CHANGE].target == "member viewer_a"
    assert entries[Action.MEMBER_ADD].target == "member newcomer"
    assert entries[Action.CLIENT_REVOKE].target == f"client {client_a.application.client_id}"
    assert {(e.actor, e.team_slug) for e in entries.values()} == {("user:admin_a", "a")}
    # Removed from its only team, the client is cut off as a revocation through the API does.
    client_a.application.user.refresh_from_db()
    assert not client_a.application.user.is_active


def test_a_team_admin_removes_a_member_audited_once(client, users, teams):
    login(client, users, "admin_a")
    url = f"{TEAMS}{teams['a'].pk}/change/"
    data = form_data(client.get(url))
    operator = TeamMember.objects.get(user=users["operator_a"])
    data[f"{row_of(data, 'members', operator.pk)}-DELETE"] = "on"
    assert client.post(url, data).status_code == 302
    assert not TeamMember.objects.filter(pk=operator.pk).exists()
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target) == (Action.MEMBER_REMOVE, "member operator_a")


def test_a_member_is_added_only_as_an_existing_active_user_once(
        client, users, teams, django_user_model):
    django_user_model.objects.create_user("gone", password="x", is_active=False)
    login(client, users, "admin_a")
    url = f"{TEAMS}{teams['a'].pk}/change/"
    for username, error in (("ghost", "No active user"), ("gone", "No active user"),
                            ("viewer_a", "is a member already")):
        data = form_data(client.get(url))
        empty = f"members-{data['members-INITIAL_FORMS']}"
        data.update({f"{empty}-username": username, f"{empty}-role": Role.ADMIN})
        page = client.post(url, data)
        assert page.status_code == 200
        assert error in page.content.decode()
    assert TeamMember.objects.filter(team=teams["a"]).count() == 3
    assert not AuditEntry.objects.exists()


def test_the_last_admin_cannot_be_demoted_or_removed(client, users, teams, client_a):
    login(client, users, "admin_a")
    url = f"{TEAMS}{teams['a'].pk}/change/"
    admin = TeamMember.objects.get(user=users["admin_a"])
    for change in ("role", "DELETE"):
        data = form_data(client.get(url))
        data[f"{row_of(data, 'members', admin.pk)}-{change}"] = (
            Role.VIEWER if change == "role" else "on")
        page = client.post(url, data)
        assert page.status_code == 200
        assert "A team keeps at least one admin" in page.content.decode()
    # A client made admin is an admin too: then the member may step down, but not both at once.
    client_a.role = Role.ADMIN
    client_a.save()
    data = form_data(client.get(url))
    data[f"{row_of(data, 'members', admin.pk)}-role"] = Role.VIEWER
    data[f"{row_of(data, 'clients', client_a.pk)}-role"] = Role.OPERATOR
    assert "A team keeps at least one admin" in client.post(url, data).content.decode()
    admin.refresh_from_db()
    client_a.refresh_from_db()
    assert (admin.role, client_a.role) == (Role.ADMIN, Role.ADMIN)
    assert not AuditEntry.objects.exists()
    data = form_data(client.get(url))
    data[f"{row_of(data, 'members', admin.pk)}-role"] = Role.VIEWER
    assert client.post(url, data).status_code == 302
    admin.refresh_from_db()
    assert admin.role == Role.VIEWER


def test_team_members_see_only_their_teams_and_only_superusers_create_or_delete_them(
        client, users, teams):
    login(client, users, "admin_a")
    page = client.get(TEAMS)
    assert page.context["cl"].result_count == 1
    assert f"{TEAMS}{teams['a'].pk}/change/" in page.content.decode()
    assert f"{TEAMS}{teams['b'].pk}/change/" not in page.content.decode()
    assert client.get(f"{TEAMS}{teams['b'].pk}/change/")["Location"] == "/admin/"
    assert client.get(f"{TEAMS}add/").status_code == 403
    assert client.post(f"{TEAMS}{teams['a'].pk}/delete/", {"post": "yes"}).status_code == 403
    # Its page shows its own people and no other user: no list of every account.
    page = client.get(f"{TEAMS}{teams['a'].pk}/change/").content.decode()
    assert "viewer_a" in page
    assert "operator_b" not in page
    assert "nobody" not in page
    assert client.get("/admin/autocomplete/", {"app_label": "teams", "model_name": "teammember",
                                               "field_name": "user", "term": "o"}
                      ).status_code == 403
    login(client, users, "root")
    assert client.get(TEAMS).context["cl"].result_count == 2
    assert client.get(f"{TEAMS}add/").status_code == 200


def test_a_superuser_creates_a_team_with_its_first_admin(client, users):
    login(client, users, "root")
    data = {"slug": "c", "name": "Team C", "members-TOTAL_FORMS": 1,
            "members-INITIAL_FORMS": 0, "members-0-username": "nobody",
            "members-0-role": Role.ADMIN, "clients-TOTAL_FORMS": 0, "clients-INITIAL_FORMS": 0}
    assert client.post(f"{TEAMS}add/", data).status_code == 302
    member = TeamMember.objects.get(user=users["nobody"])
    assert (member.team.slug, member.role) == ("c", Role.ADMIN)
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.team_slug, entry.actor) == (Action.MEMBER_ADD, "c", "user:root")
    # The new admin now manages team c in the admin, and only it.
    page = login(client, users, "nobody").get(TEAMS)
    assert page.context["cl"].result_count == 1


def test_a_viewer_or_operator_reads_their_team_and_changes_nothing(client, users, teams):
    url = f"{TEAMS}{teams['a'].pk}/change/"
    for name in ("viewer_a", "operator_a"):
        page = login(client, users, name).get(url)
        assert page.status_code == 200
        assert "admin_a" in page.content.decode()
        assert 'name="_save"' not in page.content.decode()
    data = {"members-TOTAL_FORMS": 1, "members-INITIAL_FORMS": 0, "members-0-username": "nobody",
            "members-0-role": Role.ADMIN, "clients-TOTAL_FORMS": 0, "clients-INITIAL_FORMS": 0}
    assert client.post(url, data).status_code == 403
    assert not TeamMember.objects.filter(user=users["nobody"]).exists()
    assert login(client, users, "nobody").get(TEAMS).status_code == 403


# --- the audit ----------------------------------------------------------------------------------

def test_the_audit_admin_is_read_only_and_shows_a_team_admin_only_their_teams(
        client, users, processes):
    for name in ("operator_a", "operator_b"):
        login(client, users, name)
        post_action(client, "stop", processes[f"{name[-1]}_live"])
    a_entry = AuditEntry.objects.get(team_slug="a", action=Action.STOP)
    b_entry = AuditEntry.objects.get(team_slug="b", action=Action.STOP)
    in_a = AuditEntry.objects.filter(team_slug="a").count()  # the submits too

    login(client, users, "admin_a")
    page = client.get(AUDIT)
    assert page.status_code == 200
    assert page.context["cl"].result_count == in_a < AuditEntry.objects.count()
    assert "user:operator_a" in page.content.decode()
    assert "user:operator_b" not in page.content.decode()
    assert f"{a_entry.at:%Y-%m-%d %H:%M:%S}" in page.content.decode()
    change = client.get(f"{AUDIT}{a_entry.pk}/change/")
    assert change.status_code == 200
    assert 'name="_save"' not in change.content.decode()
    assert client.post(f"{AUDIT}{a_entry.pk}/change/", {"actor": "forged"}).status_code == 403
    assert client.post(f"{AUDIT}{a_entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get(f"{AUDIT}add/").status_code == 403
    assert client.get(f"{AUDIT}{b_entry.pk}/change/")["Location"] == "/admin/"

    for name in ("viewer_a", "operator_a", "nobody"):
        assert login(client, users, name).get(AUDIT).status_code == 403
    # "View audit entry" granted by hand opens the page, not another team's entries.
    users["nobody"].user_permissions.add(Permission.objects.get(codename="view_auditentry"))
    page = login(client, users, "nobody").get(AUDIT)
    assert (page.status_code, page.context["cl"].result_count) == (200, 0)
    login(client, users, "root")
    assert client.get(AUDIT).context["cl"].result_count == AuditEntry.objects.count()
    assert client.post(f"{AUDIT}{a_entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=a_entry.pk, actor="user:operator_a").exists()

