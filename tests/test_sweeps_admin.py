"""Sweeps in the admin: read-only, counted by state, behind the team wall."""

from __future__ import annotations

import pytest

from apps.processes.models import Process
from apps.sweeps.services import sweep_create
from apps.teams.models import Team
from apps.teams.roles import Role
from apps.teams.services import team_member_add
from workers.contract import State

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/sweeps/sweep/"


@pytest.fixture
def sweeps(pipelines):
    lab = Team.objects.create(slug="lab", name="lab")
    bio = Team.objects.create(slug="bio", name="bio")
    ours, _ = sweep_create(pipeline="hello", base_config={}, grid={"name": ["a", "b", "c"]},
                           team=lab)
    theirs, _ = sweep_create(pipeline="hello", base_config={}, configs=[{}], team=bio)
    Process.objects.filter(pk=Process.objects.filter(sweep=ours).first().pk).update(
        state=State.SUCCEEDED)
    return lab, ours, theirs


def test_a_member_sees_the_teams_sweeps_counted_and_no_other(client, django_user_model,
                                                             sweeps):
    lab, ours, theirs = sweeps
    ada = django_user_model.objects.create(username="ada", is_staff=True)
    team_member_add(lab, ada, Role.VIEWER)
    client.force_login(ada)

    page = client.get(CHANGELIST)

    assert page.status_code == 200
    text = page.content.decode()
    assert str(ours.pk) in text
    assert "PENDING 2, SUCCEEDED 1" in text
    assert str(theirs.pk) not in text
    assert client.get(f"{CHANGELIST}{ours.pk}/change/").status_code == 200
    assert client.get(f"{CHANGELIST}{theirs.pk}/change/").status_code == 302  # not found
    assert client.get(f"{CHANGELIST}add/").status_code == 403
