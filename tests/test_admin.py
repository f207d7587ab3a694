"""The admin as an operator uses it: find processes, read their history, stop and re-run."""

from __future__ import annotations

import pytest

from apps.processes.models import Process
from apps.processes.services import process_create
from workers.contract import State

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/processes/process/"


@pytest.fixture
def operator(client, admin_user, pipelines):
    client.force_login(admin_user)
    return client


@pytest.fixture
def two_processes(admin_user, pipelines):
    sleep, _ = process_create(pipeline="sleep", used_config={"seconds": 5}, owner=admin_user)
    hello, _ = process_create(pipeline="hello", used_config={}, owner=admin_user)
    Process.objects.filter(pk=hello.pk).update(state=State.SUCCEEDED)
    return sleep, hello


def test_changelist_filters_by_state_and_pipeline_and_finds_by_id(operator, two_processes):
    sleep, hello = two_processes
    page = operator.get(CHANGELIST).content.decode()
    assert str(sleep.pk) in page
    assert str(hello.pk) in page
    page = operator.get(CHANGELIST, {"state__exact": "SUCCEEDED"}).content.decode()
    assert str(hello.pk) in page
    assert str(sleep.pk) not in page
    page = operator.get(CHANGELIST, {"pipeline__id__exact": sleep.pipeline_id}).content.decode()
    assert str(sleep.pk) in page
    assert str(hello.pk) not in page
    page = operator.get(CHANGELIST, {"q": str(hello.pk)}).content.decode()
    assert str(hello.pk) in page
    assert str(sleep.pk) not in page


def test_a_process_page_shows_its_event_history(operator, two_processes):
    sleep, _ = two_processes
    page = operator.get(f"{CHANGELIST}{sleep.pk}/change/")
    assert page.status_code == 200
    assert "PENDING" in page.content.decode()
    assert "sleep v1 by admin" in page.content.decode()


def test_stop_and_rerun_actions(operator, two_processes):
    sleep, hello = two_processes
    operator.post(CHANGELIST, {"action": "stop", "_selected_action": [sleep.pk]})
    sleep.refresh_from_db()
    assert sleep.state == State.STOPPED
    operator.post(CHANGELIST, {"action": "rerun", "_selected_action": [hello.pk]})
    reruns = Process.objects.filter(pipeline__name="hello").exclude(pk=hello.pk)
    assert reruns.count() == 1
    assert reruns.get().used_config == hello.used_config


def test_pipelines_and_oauth_applications_are_in_the_admin(operator):
    assert "hello" in operator.get("/admin/pipelines/pipeline/").content.decode()
    assert operator.get("/admin/oauth2_provider/application/").status_code == 200


def test_a_live_process_page_is_read_only_and_cannot_be_deleted(operator, two_processes):
    sleep, _ = two_processes  # live: QUEUED or PENDING
    page = operator.get(f"{CHANGELIST}{sleep.pk}/change/").content.decode()
    assert 'name="_save"' not in page
    assert "/delete/" not in page
    # A forged form changes nothing: the state is written by its services and events only.
    forged = operator.post(f"{CHANGELIST}{sleep.pk}/change/",
                           {"state": "SUCCEEDED", "handle": "", "exit_code": "0"})
    assert forged.status_code == 403
    assert operator.get(f"{CHANGELIST}{sleep.pk}/delete/").status_code == 403
    assert operator.post(f"{CHANGELIST}{sleep.pk}/delete/", {"post": "yes"}).status_code == 403
    sleep.refresh_from_db()
    assert sleep.state in (State.PENDING, State.QUEUED)


def test_a_finished_process_can_be_deleted(operator, two_processes):
    _, hello = two_processes  # SUCCEEDED
    page = operator.get(f"{CHANGELIST}{hello.pk}/change/").content.decode()
    assert 'name="_save"' not in page
    assert f"{hello.pk}/delete/" in page
    operator.post(f"{CHANGELIST}{hello.pk}/delete/", {"post": "yes"})
    assert not Process.objects.filter(pk=hello.pk).exists()


def test_bulk_delete_skips_live_processes(operator, two_processes):
    sleep, hello = two_processes
    selected = {"action": "delete_selected", "_selected_action": [sleep.pk, hello.pk]}
    confirm = operator.post(CHANGELIST, selected, follow=True).content.decode()
    assert "Skipped 1 live process(es)" in confirm
    operator.post(CHANGELIST, {**selected, "post": "yes"})
    assert list(Process.objects.values_list("pk", flat=True)) == [sleep.pk]
    # Only live ones selected: nothing to confirm, nothing deleted.
    operator.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [sleep.pk],
                               "post": "yes"})
    assert Process.objects.filter(pk=sleep.pk).exists()


def test_rerun_of_a_withdrawn_version_is_refused_with_a_message(operator, two_processes):
    from apps.pipelines.services import pipeline_versions_withdraw

    _, hello = two_processes
    pipeline_versions_withdraw(type(hello.pipeline_version).objects.filter(
        pk=hello.pipeline_version_id))
    page = operator.post(CHANGELIST, {"action": "rerun", "_selected_action": [hello.pk]},
                         follow=True).content.decode()
    assert "not re-run" in page
    assert "is withdrawn" in page
    assert Process.objects.filter(pipeline__name="hello").count() == 1


def test_pool_settings_cannot_be_changed_in_the_admin(client, django_user_model, pipelines):
    """Workers follow a pool's settings (a docker_host pointed at a listener got a run's
    container create with its secrets), so they come from the YAML files only: a staff user,
    even one granted change_pool, sees the pool and changes nothing."""
    from django.contrib.auth.models import Permission

    from apps.pipelines.models import Pool

    staff = django_user_model.objects.create_user("ops", password="x", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__model="pool"))
    client.force_login(staff)
    pool = Pool.objects.get(name="docker-main")
    before = pool.settings
    page = client.get(f"/admin/pipelines/pool/{pool.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert 'name="settings"' not in page.content.decode()
    forged = client.post(f"/admin/pipelines/pool/{pool.pk}/change/", {
        "capacity": 8, "queued_limit_s": 600,
        "settings": '{"docker_host": "tcp://127.0.0.1:9"}'})
    assert forged.status_code == 403
    assert client.get("/admin/pipelines/pool/add/").status_code == 403
    pool.refresh_from_db()
    assert pool.settings == before
    assert "docker_host" not in pool.settings
