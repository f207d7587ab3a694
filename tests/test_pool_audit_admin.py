"""Pools under the trail and the walls (issue 18): pausing and resuming a pool is audited like
any other action, through the API and the admin; the admin shows a staff member who does not
run the service only the pools open to their teams, as the API does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from apps.audit.models import AuditEntry
from apps.pipelines.models import PipelineVersion, Pool
from apps.pipelines.services import pipelines_load
from apps.teams.roles import Role
from apps.teams.services import team_create, team_member_add

pytestmark = pytest.mark.django_db

POOLS = "/api/pools/"
ADMIN_POOLS = "/admin/pipelines/pool/"


@pytest.fixture
def closed_pools(db, tmp_path):
    """The shipped pools, plus ``lab-only`` (open to team lab) and ``other-only``, and a
    pipeline on each (``lab-only-hello``, ``other-only-hello``)."""
    folder = tmp_path / "pipelines"
    shutil.copytree(Path(settings.PIPELINES_DIR), folder)
    hello = (folder / "hello.yaml").read_text()
    for name, team in (("lab-only", "lab"), ("other-only", "other")):
        (folder / "pools" / f"{name}.yaml").write_text(
            f"name: {name}\ntarget: local\nteams: [{team}]\nsettings: {{}}\n")
        (folder / f"{name}-hello.yaml").write_text(
            hello.replace("name: hello", f"name: {name}-hello").replace("pool: local",
                                                                         f"pool: {name}"))
    report = pipelines_load(folder)
    assert not report.errors, report.errors
    return folder


def trail(action: str) -> list[tuple[str, str]]:
    return list(AuditEntry.objects.filter(action=action).order_by("at", "id")
                .values_list("actor", "target"))


def test_pausing_and_resuming_a_pool_through_the_api_is_audited(make_client, pipelines,
                                                                 admin_user):
    _, ops = make_client("ops", staff=True)
    _, lab = make_client("lab")

    assert ops.post(f"{POOLS}local/pause/").json()["paused"] is True
    assert ops.post(f"{POOLS}local/pause/").status_code == 200  # already paused: no change
    assert lab.post(f"{POOLS}local/resume/").status_code == 403  # refused: no change
    assert ops.post(f"{POOLS}local/resume/").json()["paused"] is False

    assert trail("pool-pause") == [("client:ops", "pool local")]
    assert trail("pool-resume") == [("client:ops", "pool local")]
    superuser = Client()  # entries of no team are a superuser's to read
    superuser.force_login(admin_user)
    shown = superuser.get("/api/audit/", {"action": "pool-pause"}).json()["results"]
    assert [(e["actor"], e["action"], e["target"], e["team"]) for e in shown] == [
        ("client:ops", "pool-pause", "pool local", None)]


def test_pausing_and_resuming_a_pool_in_the_admin_is_audited(admin_user, pipelines):
    browser = Client()
    browser.force_login(admin_user)
    pool = Pool.objects.get(name="local")
    for action in ("pause", "pause", "resume"):
        browser.post(ADMIN_POOLS, {"action": action, "_selected_action": [pool.pk]})
    actor = f"user:{admin_user.username}"
    assert trail("pool-pause") == [(actor, "pool local")]
    assert trail("pool-resume") == [(actor, "pool local")]


def test_the_admin_hides_pools_closed_to_a_staff_members_teams(closed_pools,
                                                                django_user_model):
    member = django_user_model.objects.create_user("member", password="x", is_staff=True)
    team_member_add(team_create(slug="lab"), member, Role.OPERATOR)
    team_create(slug="other")
    root = django_user_model.objects.create_superuser("root", password="x")
    browser = Client()

    browser.force_login(member)
    listed = browser.get(ADMIN_POOLS).content.decode()
    assert "lab-only" in listed  # its team's
    assert "local" in listed  # open to every team
    assert "other-only" not in listed
    closed = Pool.objects.get(name="other-only")
    assert browser.get(f"{ADMIN_POOLS}{closed.pk}/change/").status_code == 302  # not there
    assert browser.get(f"{ADMIN_POOLS}{Pool.objects.get(name='lab-only').pk}/change/"
                       ).status_code == 200

    browser.force_login(root)
    assert "other-only" in browser.get(ADMIN_POOLS).content.decode()


def test_the_admin_hides_the_pipelines_of_pools_closed_to_a_staff_members_teams(
        closed_pools, django_user_model):
    member = django_user_model.objects.create_user("member", password="x", is_staff=True)
    team_member_add(team_create(slug="lab"), member, Role.ADMIN)
    team_create(slug="other")
    browser = Client()
    browser.force_login(member)

    pipelines = browser.get("/admin/pipelines/pipeline/").content.decode()
    assert "lab-only-hello" in pipelines
    assert ">hello<" in pipelines  # on a pool open to every team
    assert "other-only-hello" not in pipelines
    versions = browser.get("/admin/pipelines/pipelineversion/").content.decode()
    assert "lab-only-hello" in versions
    assert "other-only" not in versions  # neither its pipeline nor the pool's name as a filter
    hidden = PipelineVersion.objects.get(pipeline__name="other-only-hello")
    assert browser.get(f"/admin/pipelines/pipelineversion/{hidden.pk}/change/"
                       ).status_code == 302  # not there
    assert browser.get(f"/admin/pipelines/pipeline/{hidden.pipeline_id}/change/"
                       ).status_code == 302

    browser.force_login(django_user_model.objects.create_superuser("root", password="x"))
    assert "other-only-hello" in browser.get("/admin/pipelines/pipeline/").content.decode()
