"""Sweeps (issue 23): many runs of one pipeline in one request, as a client sees them through
the API. A grid or a list of configs, checked whole before anything is created; the size cap
and the team's waiting quota; Idempotency-Key; the team walls; stop.

Real transactions (admission runs once a sweep commits), on PostgreSQL; job specs are
recorded instead of published, so nothing reaches a worker."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.conf import settings

from apps.audit.models import AuditEntry
from apps.pipelines.models import Pool
from apps.pipelines.services import pipelines_load
from apps.processes import messaging
from apps.processes.events import events_apply
from apps.processes.models import Process, ProcessAttempt, ProcessEvent
from apps.sweeps.models import Sweep
from apps.teams.models import Team
from apps.teams.roles import Role
from apps.teams.services import team_client_add
from workers.contract import Event, State
from workers.signing import Sender

pytestmark = pytest.mark.django_db(transaction=True)

SWEEPS = "/api/sweeps/"
POOL = "pair"
PIPELINE = "pair-job"
WORKER = Sender(pool=POOL, worker=f"{POOL}@node1")

PAIR_JOB = f"""
name: {PIPELINE}
target: local
pool: {POOL}
run:
  command: ["true"]
config_schema:
  type: object
  properties:
    n: {{type: integer}}
    lr: {{type: number, exclusiveMinimum: 0}}
    tag: {{type: string}}
defaults: {{tag: base}}
"""


@pytest.fixture
def published(monkeypatch, relay_on_wake) -> list[str]:
    """The ids of the job specs sent, in order, by the relay round each commit wakes (nothing
    reaches the broker)."""
    sent: list[str] = []
    monkeypatch.setattr(messaging, "send_job_spec", lambda process: sent.append(str(process.pk)))
    return sent


@pytest.fixture
def cancels(monkeypatch) -> list[str]:
    """The ids of the processes a cancel was sent for."""
    sent: list[str] = []
    monkeypatch.setattr(messaging, "send_cancel", lambda process: sent.append(str(process.pk)))
    return sent


@pytest.fixture
def pool_file(tmp_path, published):
    """pool_file(yaml_lines, capacity) loads the shipped pools and pipelines plus the pool
    ``pair`` with its pipeline ``pair-job``."""
    shipped = Path(settings.PIPELINES_DIR)

    def load(extra: str = "", capacity: int = 2) -> None:
        folder = tmp_path / "pipelines"
        if not folder.exists():
            shutil.copytree(shipped, folder)
            (folder / f"{PIPELINE}.yaml").write_text(PAIR_JOB)
        (folder / "pools" / f"{POOL}.yaml").write_text(
            f"name: {POOL}\ntarget: local\ncapacity: {capacity}\nsettings: {{}}\n{extra}")
        report = pipelines_load(folder)
        assert not report.errors, report.errors

    load()
    return load


@pytest.fixture
def lab(make_client, pool_file):
    return make_client("lab")[1]


def sweep(api, key: str | None = None, **body):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.post(SWEEPS, {"pipeline": PIPELINE, **body}, format="json", **headers)


def nothing_created(before: tuple) -> bool:
    return counted() == before


def counted() -> tuple:
    return (Sweep.objects.count(), Process.objects.count(), ProcessEvent.objects.count(),
            AuditEntry.objects.count())


# --- creating -----------------------------------------------------------------------------------


def test_a_grid_creates_one_process_per_combination_in_order_and_admits_them(lab, published):
    answer = sweep(lab, base_config={"tag": "grid"}, grid={"lr": [0.1, 0.01], "n": [1, 2, 3]})

    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert body["size"] == 6
    assert body["pipeline"] == PIPELINE
    assert body["team"] == "lab"
    assert body["grid"] == {"lr": [0.1, 0.01], "n": [1, 2, 3]}
    # The pool holds two: admission ran once the sweep committed and published two.
    assert body["counts"]["QUEUED"] == 2
    assert body["counts"]["PENDING"] == 4
    assert len(published) == 2

    page = lab.get(f"{SWEEPS}{body['id']}/processes/").json()
    assert page["count"] == 6
    assert [p["used_config"] for p in page["results"]] == [
        {"tag": "grid", "lr": lr, "n": n} for lr in (0.1, 0.01) for n in (1, 2, 3)]
    assert {p["team"] for p in page["results"]} == {"lab"}
    ids = [p["id"] for p in page["results"]]
    assert sorted(published) == sorted(ids[:2])  # the first runs go first
    # Every process has its first event and attempt, as a single POST's has.
    assert ProcessEvent.objects.filter(process_id__in=ids, to_state=State.PENDING).count() == 6
    assert ProcessAttempt.objects.filter(process_id__in=ids, number=1).count() == 6
    detail = lab.get(f"/api/processes/{ids[-1]}/").json()
    assert detail["state"] == State.PENDING
    assert detail["waiting_for"].startswith("pool pair at capacity 2/2")
    # One audit entry for the sweep, not one per process.
    assert AuditEntry.objects.filter(target=f"sweep {body['id']}").count() == 1


def test_a_list_of_configs_creates_one_process_per_config_over_the_base(lab):
    answer = sweep(lab, base_config={"n": 7}, configs=[{"lr": 0.5}, {}, {"n": 1, "tag": "x"}])

    assert answer.status_code == 202, answer.content
    sweep_id = answer.json()["id"]
    configs = [p["used_config"] for p in
               lab.get(f"{SWEEPS}{sweep_id}/processes/").json()["results"]]
    assert configs == [{"tag": "base", "n": 7, "lr": 0.5}, {"tag": "base", "n": 7},
                       {"tag": "x", "n": 1}]
    counts = lab.get(f"{SWEEPS}{sweep_id}/").json()["counts"]
    assert counts["QUEUED"] + counts["PENDING"] == 3
    assert set(counts) >= {"PENDING", "QUEUED", "RUNNING", "SUCCEEDED", "STOPPED"}


def test_the_processes_of_a_sweep_come_a_page_at_a_time(lab):
    sweep_id = sweep(lab, grid={"n": list(range(7))}).json()["id"]

    first = lab.get(f"{SWEEPS}{sweep_id}/processes/?page_size=3").json()
    third = lab.get(f"{SWEEPS}{sweep_id}/processes/?page_size=3&page=3").json()

    assert first["count"] == 7
    assert [p["used_config"]["n"] for p in first["results"]] == [0, 1, 2]
    assert [p["used_config"]["n"] for p in third["results"]] == [6]
    assert third["next"] is None


def test_the_list_shows_the_teams_sweeps_newest_first_with_counts(lab, make_client):
    older = sweep(lab, grid={"n": [1]}).json()["id"]
    newer = sweep(lab, configs=[{"n": 1}, {"n": 2}]).json()["id"]
    _, other = make_client("bio")
    sweep(other, grid={"n": [1, 2, 3]})

    listed = lab.get(SWEEPS).json()

    assert [s["id"] for s in listed["results"]] == [newer, older]
    assert lab.options(SWEEPS).status_code == 200  # the form of the POST, no sweep at hand
    assert listed["results"][0]["size"] == 2
    assert sum(listed["results"][0]["counts"].values()) == 2


@pytest.mark.parametrize("body, field, words", [
    ({"configs": [{"n": 1}, {"n": 2}, {"n": "three"}, {"n": 4}]}, "configs[2]",
     "configs[2]: used_config.n: 'three' is not of type 'integer'"),
    ({"grid": {"n": [1, 2], "lr": [0.1, -1, 0.2]}}, "grid.lr[1]",
     "grid.lr[1]: used_config.lr: -1 is less than or equal to the minimum of 0"),
    ({"grid": {"n": [1, 2], "lr": []}}, "grid.lr", "must be a non-empty list"),
    ({"grid": {"n": 3}}, "grid.n", "must be a non-empty list"),
    ({"base_config": {"n": "x"}, "grid": {"lr": [0.1]}}, "grid[0]", "used_config.n"),
    ({"configs": [{"n": 1}], "grid": {"n": [1]}}, "configs", "not both"),
    ({}, "configs", "not neither"),
    ({"configs": []}, "configs", "at least 1"),
    ({"grid": "{\"n\": [1]}"}, "grid", "Must be a JSON object"),
    ({"configs": [{"n": 1}, 5]}, "configs", "configs[1]: Must be a JSON object"),
    ({"configs": [{"n": 1}], "secrets": {"A": "b"}}, "secrets", "Unknown field"),
])
def test_an_invalid_run_anywhere_is_a_400_naming_it_and_creates_nothing(lab, body, field,
                                                                         words):
    before = counted()

    answer = sweep(lab, **body)

    assert answer.status_code == 400, answer.content
    fields = answer.json()["fields"]
    assert field in fields, fields
    assert words in str(fields[field]), fields
    assert nothing_created(before)


def test_an_unknown_pipeline_is_a_400_naming_it(lab):
    answer = lab.post(SWEEPS, {"pipeline": "nope", "grid": {"n": [1]}}, format="json")
    assert answer.status_code == 400
    assert "pipeline" in answer.json()["fields"]


def test_a_sweep_past_the_size_cap_is_a_413_naming_it_and_creates_nothing(lab, settings):
    settings.SWEEP_MAX_SIZE = 5
    before = counted()

    answer = sweep(lab, grid={"n": [1, 2, 3], "lr": [0.1, 0.2]})

    assert answer.status_code == 413, answer.content
    assert "ORCH_SWEEP_MAX_SIZE (5)" in answer.json()["detail"]
    assert "6 runs" in answer.json()["detail"]
    assert nothing_created(before)
    assert sweep(lab, grid={"n": [1, 2, 3, 4, 5]}).status_code == 202


def test_a_sweep_past_the_teams_waiting_quota_is_a_429_that_creates_nothing(lab, pool_file):
    pool_file("quotas: {default: {waiting: 4}}\n")
    Pool.objects.filter(name=POOL).update(paused=True)  # nothing admitted: all of them wait
    assert sweep(lab, grid={"n": [1, 2]}).status_code == 202
    before = counted()

    refused = sweep(lab, grid={"n": [1, 2, 3]})

    assert refused.status_code == 429, refused.content
    assert int(refused["Retry-After"]) > 0
    body = refused.json()
    assert body["code"] == "quota_exceeded"
    assert body["detail"].startswith(
        "team lab has 2 of its 4 waiting processes on pool pair; a sweep of 3 does not fit")
    assert nothing_created(before)
    assert sweep(lab, grid={"n": [1, 2]}).status_code == 202  # what fits still goes


# --- Idempotency-Key ----------------------------------------------------------------------------


def test_a_replayed_idempotency_key_answers_the_first_sweep_and_creates_nothing(lab):
    first = sweep(lab, "sweep-1", grid={"n": [1, 2, 3]})
    assert first.status_code == 202
    before = counted()

    again = sweep(lab, "sweep-1", grid={"n": [1, 2, 3]})

    assert again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert nothing_created(before)


def test_the_same_idempotency_key_with_another_sweep_is_a_422(lab):
    first = sweep(lab, "sweep-1", grid={"n": [1, 2, 3]})
    before = counted()

    other = sweep(lab, "sweep-1", grid={"n": [1, 2, 4]})

    assert other.status_code == 422, other.content
    assert first.json()["id"] in other.json()["fields"]["Idempotency-Key"][0]
    assert nothing_created(before)


def test_an_idempotency_key_is_the_clients_own(lab, make_client):
    mine = sweep(lab, "shared", grid={"n": [1]}).json()["id"]
    _, other = make_client("bio")
    theirs = sweep(other, "shared", grid={"n": [1]})
    assert theirs.status_code == 202
    assert theirs.json()["id"] != mine


# --- walls --------------------------------------------------------------------------------------


def test_another_teams_sweep_is_a_404_on_every_door(lab, make_client):
    sweep_id = sweep(lab, grid={"n": [1, 2]}).json()["id"]
    _, other = make_client("bio")

    assert other.get(f"{SWEEPS}{sweep_id}/").status_code == 404
    assert other.get(f"{SWEEPS}{sweep_id}/processes/").status_code == 404
    assert other.post(f"{SWEEPS}{sweep_id}/stop/").status_code == 404
    assert other.get(SWEEPS).json()["results"] == []
    assert other.get(f"{SWEEPS}not-a-uuid/").status_code == 404
    assert Process.objects.filter(sweep_id=sweep_id, state=State.STOPPED).count() == 0


def test_a_viewer_reads_a_sweep_but_stopping_it_is_a_403_naming_the_role(lab, make_client):
    sweep_id = sweep(lab, grid={"n": [1, 2]}).json()["id"]
    app, viewer = make_client("watcher")
    team_client_add(Team.objects.get(slug="lab"), app, Role.VIEWER)

    assert viewer.get(f"{SWEEPS}{sweep_id}/").status_code == 200
    assert viewer.get(f"{SWEEPS}{sweep_id}/processes/").json()["count"] == 2
    refused = viewer.post(f"{SWEEPS}{sweep_id}/stop/")

    assert refused.status_code == 403
    assert "needs the role operator" in refused.json()["detail"]
    assert Process.objects.filter(sweep_id=sweep_id, state=State.STOPPED).count() == 0


def test_a_viewer_cannot_submit_a_sweep_for_the_team(make_client, pool_file):
    app, viewer = make_client("watcher")
    team_client_add(Team.objects.get(slug="watcher"), app, Role.VIEWER)
    before = counted()

    answer = sweep(viewer, grid={"n": [1]})

    assert answer.status_code == 403  # in the team, its role too low: named
    assert "needs the role operator" in answer.json()["detail"]
    assert nothing_created(before)


def test_a_token_without_write_is_a_403(make_client, pool_file):
    _, reader = make_client("lab", scope="read")
    assert sweep(reader, grid={"n": [1]}).status_code == 403


# --- stop ---------------------------------------------------------------------------------------


def test_stop_ends_the_waiting_at_once_and_cancels_the_running(lab, cancels):
    body = sweep(lab, grid={"n": [1, 2, 3, 4, 5]}).json()
    ids = [p["id"] for p in lab.get(f"{SWEEPS}{body['id']}/processes/").json()["results"]]
    running = ids[0]  # admitted first; the worker says it runs on its host
    events_apply([Event(process_id=running, source="test", state=State.RUNNING,
                        handle=f"job-{running}", host=WORKER.host)], WORKER)

    answer = lab.post(f"{SWEEPS}{body['id']}/stop/")

    assert answer.status_code == 200, answer.content
    assert answer.json()["stopped"] == 5
    states = dict(Process.objects.filter(sweep_id=body["id"]).values_list("id", "state"))
    assert states.pop(next(k for k in states if str(k) == running)) == State.STOPPING
    assert set(states.values()) == {State.STOPPED}
    assert cancels == [running]  # only a job on its target needs a cancel
    waiting = ids[-1]
    assert [e["to"] for e in lab.get(f"/api/processes/{waiting}/events/").json()] == [
        State.PENDING, State.STOPPED]
    attempt = ProcessAttempt.objects.get(process_id=waiting)
    assert (attempt.state, attempt.ended_at is not None) == (State.STOPPED, True)
    assert answer.json()["counts"]["STOPPED"] == 4
    assert answer.json()["counts"]["STOPPING"] == 1

    again = lab.post(f"{SWEEPS}{body['id']}/stop/")  # idempotent
    assert again.json()["stopped"] == 0


def test_a_stopped_waiting_process_is_never_admitted_after(lab, published):
    body = sweep(lab, grid={"n": [1, 2, 3, 4]}).json()
    assert len(published) == 2
    lab.post(f"{SWEEPS}{body['id']}/stop/")
    from apps.processes.admission import admit_all

    admit_all()

    assert len(published) == 2
    assert Process.objects.filter(sweep_id=body["id"], admitted_at__isnull=False).count() == 2


def test_stop_frees_the_slots_of_admitted_runs_not_yet_published(lab, monkeypatch, published):
    def broker_down(process):
        raise ConnectionError("the broker is down")

    monkeypatch.setattr(messaging, "send_job_spec", broker_down)
    first = sweep(lab, grid={"n": [1, 2, 3]}).json()
    held = Process.objects.filter(sweep_id=first["id"], admitted_at__isnull=False)
    assert held.filter(state=State.PENDING).count() == 2  # admitted, their specs not sent

    assert lab.post(f"{SWEEPS}{first['id']}/stop/").json()["stopped"] == 3

    assert set(Process.objects.filter(sweep_id=first["id"]).values_list(
        "state", flat=True)) == {State.STOPPED}
    monkeypatch.setattr(messaging, "send_job_spec",
                        lambda process: published.append(str(process.pk)))
    second = sweep(lab, grid={"n": [4, 5]}).json()
    assert second["counts"]["QUEUED"] == 2  # the pool's two slots were free again
