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


# --- issue 21: an admin operators can work in ----------------------------------------------------

def with_log(process, text: str, *, state=State.RUNNING, finished=False):
    """``process`` RUNNING (or ``state``) for a minute, its output ``text`` kept as one chunk."""
    from datetime import timedelta

    from django.utils import timezone

    from apps.processes.models import ProcessLogChunk

    size = len(text.encode())
    ProcessLogChunk.objects.create(process=process, offset=0, end=size, text=text)
    started = timezone.now() - timedelta(minutes=1, seconds=5)
    Process.objects.filter(pk=process.pk).update(
        state=state, log_size=size, log_kept=size, started_at=started,
        finished_at=started + timedelta(minutes=1, seconds=2) if finished else None)
    process.refresh_from_db()
    return process


def test_a_process_page_shows_its_state_badge_times_to_the_second_links_and_log_end(
        operator, two_processes):
    sleep, _ = two_processes
    lines = "".join(f"line {i}\n" for i in range(5000))  # about 48 KB: more than the page shows
    with_log(sleep, lines)
    page = operator.get(f"{CHANGELIST}{sleep.pk}/change/").content.decode()
    assert '<span class="state-badge state-running">RUNNING</span>' in page
    assert sleep.created_at.strftime("%Y-%m-%d %H:%M:%S") in page  # to the second
    assert f"/admin/pipelines/pipelineversion/{sleep.pipeline_version_id}/change/" in page
    assert "/admin/pipelines/pool/" in page
    assert ">local</a>" in page
    assert "1m 05s" in page or "1m 06s" in page  # running for a minute and 5 s
    # The end of the log on the page, the whole of it one link away.
    assert "line 4999" in page
    assert "line 0\n" not in page
    whole = operator.get(f"{CHANGELIST}{sleep.pk}/log/")
    assert whole["Content-Type"] == "text/plain; charset=utf-8"
    assert whole.content.decode() == lines
    assert f"{CHANGELIST}{sleep.pk}/log/" in page


def test_the_list_shows_badges_and_durations_and_filters_by_owner_pool_and_time(
        operator, two_processes, admin_user, django_user_model):
    from datetime import timedelta

    from django.utils import timezone

    sleep, hello = two_processes
    with_log(hello, "hello\n", state=State.SUCCEEDED, finished=True)
    other = django_user_model.objects.create_user("other", is_staff=True)
    Process.objects.filter(pk=sleep.pk).update(owner=other)
    page = operator.get(CHANGELIST).content.decode()
    assert 'class="state-badge state-succeeded"' in page
    assert "1m 02s" in page  # how long hello ran
    page = operator.get(CHANGELIST, {"owner__id__exact": other.pk}).content.decode()
    assert str(sleep.pk) in page
    assert str(hello.pk) not in page
    page = operator.get(CHANGELIST, {"pool": "local"}).content.decode()
    assert str(sleep.pk) in page
    assert str(hello.pk) in page
    page = operator.get(CHANGELIST, {"pool": "docker-main"}).content.decode()
    assert str(sleep.pk) not in page
    since = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S%z")
    page = operator.get(CHANGELIST, {"created_at__gte": since}).content.decode()
    assert str(sleep.pk) in page
    page = operator.get(CHANGELIST, {"created_at__lt": since}).content.decode()
    assert str(sleep.pk) not in page


def test_stop_action_says_what_became_of_each_process(operator, two_processes):
    sleep, hello = two_processes
    page = operator.post(CHANGELIST, {"action": "stop", "_selected_action": [sleep.pk, hello.pk]},
                         follow=True).content.decode()
    assert f"Stopped 1 process(es) before they reached their target: {str(sleep.pk)[:8]}" in page
    assert f"Left 1 finished process(es) as they were: {str(hello.pk)[:8]}" in page


def test_stop_and_rerun_buttons_on_a_process_page(operator, two_processes):
    sleep, hello = two_processes
    page = operator.get(f"{CHANGELIST}{sleep.pk}/change/").content.decode()
    assert 'id="stop-process"' in page
    assert 'id="rerun-process"' in page
    assert operator.get(f"{CHANGELIST}{sleep.pk}/stop/").status_code == 405  # a POST only
    done = operator.post(f"{CHANGELIST}{sleep.pk}/stop/", follow=True)
    assert done.redirect_chain[-1][0] == f"{CHANGELIST}{sleep.pk}/change/"
    assert "Stopped 1 process(es)" in done.content.decode()
    sleep.refresh_from_db()
    assert sleep.state == State.STOPPED
    # A finished process has no stop button; its re-run opens the new process's page.
    page = operator.get(f"{CHANGELIST}{hello.pk}/change/").content.decode()
    assert 'id="stop-process"' not in page
    again = operator.post(f"{CHANGELIST}{hello.pk}/rerun/", follow=True)
    new = Process.objects.filter(pipeline__name="hello").exclude(pk=hello.pk).get()
    assert again.redirect_chain[-1][0] == f"{CHANGELIST}{new.pk}/change/"
    assert "Started 1 new process(es)" in again.content.decode()


def test_a_rerun_from_the_admin_belongs_to_the_original_team_and_its_client_sees_it(
        client, make_client, django_user_model, pipelines):
    from apps.teams.models import TeamClient
    from apps.teams.roles import Role
    from apps.teams.services import team_member_add

    application, api = make_client("lab")
    made = api.post("/api/processes/", {"pipeline": "hello", "used_config": {}}, format="json")
    original = Process.objects.get(pk=made.json()["id"])
    Process.objects.filter(pk=original.pk).update(state=State.SUCCEEDED)
    ops = django_user_model.objects.create_user("ops", is_staff=True)
    team_member_add(TeamClient.objects.get(application=application).team, ops, Role.OPERATOR)
    client.force_login(ops)
    client.post(CHANGELIST, {"action": "rerun", "_selected_action": [original.pk]})
    rerun = Process.objects.exclude(pk=original.pk).get()
    assert rerun.team_id == original.team_id
    assert api.get(f"/api/processes/{rerun.pk}/").status_code == 200
    assert str(rerun.pk) in {p["id"] for p in api.get("/api/processes/").json()["results"]}


def test_deleting_a_finished_process_removes_its_events_and_log(operator, two_processes):
    from apps.processes.models import ProcessEvent, ProcessLogChunk

    _, hello = two_processes
    with_log(hello, "hello\n", state=State.SUCCEEDED, finished=True)
    operator.post(f"{CHANGELIST}{hello.pk}/delete/", {"post": "yes"})
    assert not ProcessLogChunk.objects.filter(process_id=hello.pk).exists()
    assert not ProcessEvent.objects.filter(process_id=hello.pk).exists()


@pytest.mark.parametrize("model", ["pipeline", "pipelineversion", "pool", "worker"])
def test_what_files_and_heartbeats_write_is_read_only_with_no_add_button(
        operator, pipelines, model):
    from django.utils import timezone

    from apps.pipelines.models import Pipeline, PipelineVersion, Pool, Worker

    Worker.objects.create(pool="local", host="h1", name="w@h1", target="local",
                          last_seen=timezone.now())
    objects = {"pipeline": Pipeline, "pipelineversion": PipelineVersion, "pool": Pool,
               "worker": Worker}[model]
    listing = f"/admin/pipelines/{model}/"
    assert f"{listing}add/" not in operator.get(listing).content.decode()
    assert operator.get(f"{listing}add/").status_code == 403
    one = objects.objects.first()
    page = operator.get(f"{listing}{one.pk}/change/").content.decode()
    assert 'name="_save"' not in page
    assert operator.post(f"{listing}{one.pk}/change/", {"capacity": 99}).status_code == 403
    assert operator.get(f"{listing}{one.pk}/delete/").status_code == 403


def test_versions_are_still_withdrawn_and_restored_by_their_actions(operator, pipelines):
    from apps.pipelines.models import PipelineVersion

    version = PipelineVersion.objects.get(pipeline__name="hello", number=1)
    page = operator.post("/admin/pipelines/pipelineversion/", {
        "action": "withdraw", "_selected_action": [version.pk]}, follow=True).content.decode()
    assert "Withdrew 1 version(s)" in page
    version.refresh_from_db()
    assert version.withdrawn


def test_the_pools_page_shows_live_usage_and_marks_stale_workers(operator, two_processes):
    from datetime import timedelta

    from django.utils import timezone

    from apps.pipelines.models import Pool, Worker

    now = timezone.now()
    Worker.objects.create(pool="local", host="h1", name="alive@h1", target="local", capacity=4,
                          last_seen=now)
    Worker.objects.create(pool="local", host="h2", name="gone@h2", target="local", capacity=4,
                          last_seen=now - timedelta(hours=1))
    page = operator.get("/admin/pipelines/pool/")
    rows = {row.name: row for row in page.context["cl"].result_list}
    admin = page.context["cl"].model_admin
    assert admin.workers_alive(rows["local"]) == 1
    assert now.strftime("%Y-%m-%d %H:%M:%S") in admin.last_heartbeat(rows["local"])
    assert admin.workers_alive(rows["docker-main"]) == 0
    assert admin.last_heartbeat(rows["docker-main"]) == "never"
    assert admin.running(rows["local"]) + admin.waiting(rows["local"]) >= 1  # sleep's run
    local = Pool.objects.get(name="local")
    detail = operator.get(f"/admin/pipelines/pool/{local.pk}/change/").content.decode()
    assert "alive@h1" in detail
    assert "gone@h2" in detail
    assert 'heartbeat-stale">stale</span> gone@h2' in detail
    workers = operator.get("/admin/pipelines/worker/", {"heartbeat": "alive"}).content.decode()
    assert "alive@h1" in workers
    assert "gone@h2" not in workers
    workers = operator.get("/admin/pipelines/worker/").content.decode()
    assert 'heartbeat-stale">stale' in workers


def test_view_site_leads_to_the_api_documentation(operator):
    page = operator.get("/admin/").content.decode()
    assert 'href="/api/docs/"' in page
    assert operator.get("/api/docs/").status_code == 200
    assert "orchestration admin" in page
