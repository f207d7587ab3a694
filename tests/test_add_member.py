"""manage.py add_member: a browser user joins a team, and what they then see in the API."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from apps.audit.models import AuditEntry
from apps.processes.services import process_create
from apps.teams.models import TeamMember
from apps.teams.services import team_create

pytestmark = pytest.mark.django_db


def test_a_member_added_sees_the_teams_runs_and_a_role_change_is_audited(
        pipelines, django_user_model):
    lab = team_create(slug="lab")
    process, _ = process_create(pipeline="hello", used_config={}, team=lab)
    ada = django_user_model.objects.create(username="ada", is_staff=True)
    api = APIClient()
    api.force_login(ada)
    assert api.get(f"/api/processes/{process.pk}/").status_code == 404

    call_command("add_member", "lab", "ada")
    assert TeamMember.objects.get(user=ada).role == "viewer"
    assert api.get(f"/api/processes/{process.pk}/").status_code == 200
    assert api.post(f"/api/processes/{process.pk}/stop/").status_code == 403

    call_command("add_member", "lab", "ada", "--role", "operator")
    assert api.post(f"/api/processes/{process.pk}/stop/").status_code == 200
    actions = list(AuditEntry.objects.filter(team=lab).order_by("id")
                   .values_list("action", "target", "detail"))
    assert actions == [
        ("submit", f"process {process.pk}", {"pipeline": "hello", "version": 1}),
        ("member-add", "member ada", {"role": "viewer"}),
        ("role-change", "member ada", {"from": "viewer", "to": "operator"}),
        ("stop", f"process {process.pk}", {"state": process.state}),
    ]


def test_an_unknown_team_or_user_is_refused_with_the_name():
    with pytest.raises(CommandError, match="no team 'nope'"):
        call_command("add_member", "nope", "ada")
    team_create(slug="lab")
    with pytest.raises(CommandError, match="no active user 'ada'"):
        call_command("add_member", "lab", "ada")


def test_new_user_makes_a_staff_user_without_a_password_and_refuses_an_existing_one(
        django_user_model):
    team_create(slug="lab")
    call_command("add_member", "lab", "ada", "--new-user")
    ada = django_user_model.objects.get(username="ada")
    assert ada.is_staff
    assert not ada.is_superuser
    assert not ada.has_usable_password()
    assert TeamMember.objects.get(user=ada).role == "viewer"
    with pytest.raises(CommandError, match="exists already"):
        call_command("add_member", "lab", "ada", "--new-user")
