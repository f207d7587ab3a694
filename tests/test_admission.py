"""Admission (issue 18, first step): a pool's capacity is enforced in one place, its teams,
quotas and weights from its file hold, priorities order a team's runs, and a paused pool
admits nothing. Through the API as a client sees it; slots free by the end events a worker
sends, applied as the control consumer applies them.

Real transactions throughout (admission runs once a create commits), on PostgreSQL; job specs
are recorded instead of published, so nothing reaches a worker."""

from __future__ import annotations

import random
import shutil
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from apps.audit.models import AuditEntry
from apps.pipelines.models import Pool
from apps.pipelines.services import pipelines_load
from apps.processes import admission, messaging
from apps.processes.admission import admit, holding
from apps.processes.events import events_apply
from apps.processes.models import Process
from apps.processes.relay import publish_admitted, relay_round
from apps.processes.services import process_create
from apps.teams.models import Team
from workers.contract import Event, State
from workers.signing import Sender

pytestmark = pytest.mark.django_db(transaction=True)

PROCESSES = "/api/processes/"
POOLS = "/api/pools/"
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
  properties: {{n: {{type: integer}}}}
"""


@pytest.fixture
def published(monkeypatch, relay_on_wake) -> list[str]:
    """The ids of the job specs sent, in order (nothing reaches the broker)."""
    sent: list[str] = []
    monkeypatch.setattr(messaging, "send_job_spec", lambda process: sent.append(str(process.pk)))
    return sent


@pytest.fixture
def pool_file(tmp_path, published):
    """pool_file(yaml_lines) loads the shipped pools and pipelines plus the pool ``pair``
    (capacity 2 and what ``yaml_lines`` adds) with its pipeline ``pair-job``."""
    shipped = Path(settings.PIPELINES_DIR)

    def load(extra: str = "", capacity: int = 2) -> Path:
        folder = tmp_path / "pipelines"
        if not folder.exists():
            shutil.copytree(shipped, folder)
            (folder / f"{PIPELINE}.yaml").write_text(PAIR_JOB)
        (folder / "pools" / f"{POOL}.yaml").write_text(
            f"name: {POOL}\ntarget: local\ncapacity: {capacity}\nsettings: {{}}\n{extra}")
        report = pipelines_load(folder)
        assert not report.errors, report.errors
        return folder

    return load


def post(api, n: int = 0, **body):
    return api.post(PROCESSES, {"pipeline": PIPELINE, "used_config": {"n": n}, **body},
                    format="json")


def posted(api, count: int, **body) -> list[str]:
    ids = []
    for n in range(count):
        answer = post(api, n, **body)
        assert answer.status_code == 201, answer.content
        ids.append(answer.json()["id"])
    return ids


def end(pid: str, state: str = State.SUCCEEDED) -> None:
    """The pool's worker reports the job of ``pid`` ended, as a poll answer would."""
    events_apply([Event(process_id=pid, source="test", state=state, handle=f"job-{pid}",
                        host=WORKER.host, exit_code=0)], WORKER)


def admitted(ids: list[str]) -> list[str]:
    rows = Process.objects.filter(pk__in=ids, admitted_at__isnull=False).order_by("admitted_at")
    return [str(pk) for pk in rows.values_list("pk", flat=True)]


def pair(api) -> dict:
    return next(p for p in api.get(POOLS).json() if p["name"] == POOL)


# --- capacity ---------------------------------------------------------------------------------


def test_a_pool_runs_at_most_its_capacity_and_each_waiting_run_says_why(
        make_client, pool_file, published):
    pool_file()
    _, api = make_client("lab")
    ids = posted(api, 5)

    assert published == ids[:2]
    first = api.get(f"{PROCESSES}{ids[0]}/").json()
    assert first["state"] == State.QUEUED
    assert first["admitted_at"] is not None
    assert first["waiting_for"] is None
    third = api.get(f"{PROCESSES}{ids[2]}/").json()
    assert third["state"] == State.PENDING
    assert third["admitted_at"] is None
    assert third["waiting_for"] == "pool pair at capacity 2/2; next to go"
    listed = {p["id"]: p["waiting_for"] for p in api.get(PROCESSES).json()["results"]}
    assert listed[ids[4]] == "pool pair at capacity 2/2; behind 2 processes"
    figures = pair(api)
    assert (figures["capacity"], figures["running"], figures["waiting"]) == (2, 2, 3)

    end(ids[0])  # a slot frees: the next in line goes, and only it
    assert published == ids[:3]
    assert holding(POOL).count() == 2
    assert pair(api)["waiting"] == 2


def test_two_admitters_at_once_never_admit_past_capacity(pool_file, monkeypatch, published,
                                                         make_client):
    """Two relays admit the same pool and publish at the same moment, round after round:
    never more than its 2 slots held, and each of the 10 waiting runs admitted and published
    once."""
    pool_file()
    app, _ = make_client("lab")
    Pool.objects.filter(name=POOL).update(paused=True)  # they wait, all 10
    team = Team.objects.get(slug="lab")
    ids = [str(process_create(pipeline=PIPELINE, used_config={}, owner=app.user,
                              application=app, team=team)[0].pk) for _ in range(10)]
    Pool.objects.filter(name=POOL).update(paused=False)

    # Each admitter dawdles between counting the slots and choosing: without the pool's lock
    # the second would count before the first commits and choose after it.
    heads = admission._heads
    pace = threading.local()

    def dawdling_heads(pool_name, count):
        time.sleep(getattr(pace, "delay", 0))
        return heads(pool_name, count)

    monkeypatch.setattr(admission, "_heads", dawdling_heads)
    rounds = 5
    start = threading.Barrier(2)
    done = threading.Barrier(3)
    most_held: list[int] = []
    failures: list[BaseException] = []

    def admitter(delay: float):
        pace.delay = delay
        try:
            for _ in range(rounds):
                start.wait(timeout=30)
                admit(POOL)
                publish_admitted()  # as two relays would, each its own batches
                done.wait(timeout=30)
                done.wait(timeout=30)  # the main thread ends this round's jobs meanwhile
        except BaseException as exc:  # shown by the main thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=admitter, args=(d,)) for d in (0.05, 0.3)]
    for thread in threads:
        thread.start()
    for _ in range(rounds):
        done.wait(timeout=60)
        most_held.append(holding(POOL).count())
        # Their jobs end; the pool paused meanwhile, so only the two admitters admit.
        Pool.objects.filter(name=POOL).update(paused=True)
        for process in holding(POOL):
            end(str(process.pk))
        Pool.objects.filter(name=POOL).update(paused=False)
        done.wait(timeout=60)
    for thread in threads:
        thread.join(timeout=60)

    assert not failures, failures
    assert most_held == [2] * rounds
    assert sorted(published) == sorted(ids)  # each once: 10 specs, 10 processes


# --- quotas -------------------------------------------------------------------------------------


def test_past_its_waiting_quota_a_post_is_a_429_that_creates_nothing(make_client, pool_file):
    pool_file("quotas: {default: {waiting: 3}}\n")
    _, api = make_client("lab")
    posted(api, 5)  # 2 admitted, 3 waiting
    before = (Process.objects.count(), AuditEntry.objects.count())

    refused = post(api)
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    body = refused.json()
    assert body["code"] == "quota_exceeded"
    assert body["detail"].startswith("team lab has 3 of its 3 waiting processes on pool pair")
    assert (Process.objects.count(), AuditEntry.objects.count()) == before

    _, other = make_client("bio")  # another team's quota is its own
    assert post(other).status_code == 201


def test_two_posts_racing_for_the_last_waiting_place_cannot_both_pass(
        make_client, pool_file, monkeypatch):
    pool_file("quotas: {lab: {waiting: 1}}\n")
    Pool.objects.filter(name=POOL).update(paused=True)
    app, _ = make_client("lab")
    team = Team.objects.get(slug="lab")
    waiting_on = admission.waiting_on

    def slow_count(pool_name=None):  # the count and the insert far apart: a wide window
        time.sleep(0.3)
        return waiting_on(pool_name)

    monkeypatch.setattr(admission, "waiting_on", slow_count)
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def submit():
        start.wait(timeout=30)
        try:
            process_create(pipeline=PIPELINE, used_config={}, owner=app.user,
                           application=app, team=team)
            outcomes.append("created")
        except admission.QuotaExceeded:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["created", "refused"]
    assert Process.objects.filter(team=team).count() == 1


def test_a_team_at_its_running_quota_waits_while_another_team_runs(make_client, pool_file):
    pool_file("quotas: {lab: {running: 1}}\n")
    _, lab = make_client("lab")
    mine = posted(lab, 3)
    assert admitted(mine) == mine[:1]  # one slot of two is free, but not for lab
    waiting = lab.get(f"{PROCESSES}{mine[1]}/").json()
    assert waiting["waiting_for"] == "team quota 1/1 running on pair"

    _, bio = make_client("bio")
    theirs = posted(bio, 1)
    assert admitted(theirs) == theirs


# --- fair share and priority ------------------------------------------------------------------


def test_a_team_that_comes_later_gets_its_share_before_the_first_team_runs_on(
        make_client, pool_file):
    """Team A posts 10, then team B posts 2, on a pool of 2: both of B's start before A's
    fifth. Jobs end in the order they started."""
    pool_file()
    _, team_a = make_client("team-a")
    _, team_b = make_client("team-b")
    a_ids = posted(team_a, 10)
    b_ids = posted(team_b, 2)
    b_first = team_b.get(f"{PROCESSES}{b_ids[0]}/").json()["waiting_for"]
    assert b_first == "pool pair at capacity 2/2; next to go"  # ahead of A's eight

    while len(admitted(a_ids + b_ids)) < 12:
        oldest = holding(POOL).order_by("admitted_at").first()
        end(str(oldest.pk))
    order = admitted(a_ids + b_ids)
    assert order.index(b_ids[1]) < order.index(a_ids[4]), order


def test_weights_share_a_pool_unevenly_and_the_queue_shows_its_order(make_client, pool_file):
    pool_file("weights: {heavy: 2}\n")
    _, ops = make_client("ops", staff=True)
    ops.post(f"{POOLS}{POOL}/pause/")
    _, heavy = make_client("heavy")
    _, light = make_client("light")
    h = posted(heavy, 4)
    li = posted(light, 4)

    queue = ops.get(f"{POOLS}{POOL}/queue/").json()
    assert [row["id"] for row in queue["results"]] == [
        h[0], li[0], h[1], h[2], li[1], h[3], li[2], li[3]]
    assert [row["position"] for row in queue["results"]] == list(range(1, 9))
    assert queue["results"][0]["waiting_for"] == "pool pair paused"
    assert queue["results"][1]["team"] == "light"
    assert queue["results"][1]["pipeline"] == PIPELINE

    own = light.get(f"{POOLS}{POOL}/queue/").json()  # a team sees its own, at their places
    assert [(row["id"], row["position"]) for row in own["results"]] == [
        (li[0], 2), (li[1], 5), (li[2], 7), (li[3], 8)]
    page = ops.get(f"{POOLS}{POOL}/queue/?page_size=3&page=2").json()
    assert [row["position"] for row in page["results"]] == [4, 5, 6]
    assert page["count"] == 8
    for query in ("page=0", "page=1&page=2", "page_size=501", "page=\u0662"):
        refused = ops.get(f"{POOLS}{POOL}/queue/?{query}")
        assert refused.status_code == 400, query
        assert set(refused.json()["fields"]) <= {"page", "page_size"}, query


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_what_each_waiting_run_says_agrees_with_its_place_in_the_queue(
        make_client, pool_file, seed):
    """A run's own waiting_for (worked out for it alone) and the queue (the whole order,
    simulated) agree for every waiting run: over-quota teams, weights, priorities, ties."""
    rng = random.Random(seed)  # noqa: S311 - a repeatable mix of posts, not a secret
    pool_file("quotas: {t1: {running: 2}}\nweights: {t2: 2, t3: 0.5}\n", capacity=2)
    teams = {slug: make_client(slug)[1] for slug in ("t1", "t2", "t3")}
    _, ops = make_client("ops", staff=True)
    posted(teams["t2"], 2)  # t2 holds the two slots: t1's third waiting run is over quota
    for _ in range(16):
        slug = rng.choice(sorted(teams))
        assert post(teams[slug], priority=rng.choice([-1, 0, 0, 1])).status_code == 201

    queue = ops.get(f"{POOLS}{POOL}/queue/?page_size=500").json()["results"]
    assert len(queue) == 16
    listed = {}  # pages of 4: each read at once, yet ranked among all that wait
    for api in teams.values():
        url = f"{PROCESSES}?page_size=4"
        while url:
            page = api.get(url).json()
            listed.update({p["id"]: p["waiting_for"] for p in page["results"]})
            url = page["next"]
    for row in queue:
        own = teams[row["team"]].get(f"{PROCESSES}{row['id']}/").json()
        assert own["waiting_for"] == row["waiting_for"], (row["position"], queue)
        assert listed[row["id"]] == row["waiting_for"], (row["position"], queue)
    assert any("of teams using less" in row["waiting_for"] for row in queue)


def test_a_higher_priority_goes_first_within_its_team(make_client, pool_file):
    pool_file()
    _, api = make_client("lab")
    posted(api, 2)  # the two slots are taken
    low = posted(api, 2)
    urgent = post(api, priority=5).json()
    assert urgent["priority"] == 5
    queue = api.get(f"{POOLS}{POOL}/queue/").json()["results"]
    assert [row["id"] for row in queue] == [urgent["id"], *low]

    refused = post(api, priority=11)
    assert refused.status_code == 400
    assert "priority" in refused.json()["fields"]
    assert post(api, priority="high").status_code == 400
    assert post(api, priority=True).status_code == 400


# --- pause --------------------------------------------------------------------------------------


def test_a_paused_pool_admits_nothing_until_it_resumes(make_client, pool_file, published):
    folder = pool_file()
    _, ops = make_client("ops", staff=True)
    _, api = make_client("lab")
    running = posted(api, 1)

    forbidden = api.post(f"{POOLS}{POOL}/pause/")
    assert forbidden.status_code == 403
    assert "those who run the service" in forbidden.json()["detail"]
    assert ops.post(f"{POOLS}no-such-pool/pause/").status_code == 404
    paused = ops.post(f"{POOLS}{POOL}/pause/")
    assert paused.status_code == 200
    assert paused.json() == {"name": POOL, "paused": True}

    waiting = posted(api, 2)
    assert published == running  # a free slot, and still nothing goes
    assert api.get(f"{PROCESSES}{waiting[0]}/").json()["waiting_for"] == "pool pair paused"
    assert pair(api)["paused"] is True
    end(running[0])  # running jobs go on and end; their slots stay empty
    assert published == running
    pipelines_load(folder)  # loading the files leaves the pause as it is
    assert Pool.objects.get(name=POOL).paused

    assert ops.post(f"{POOLS}{POOL}/resume/").json() == {"name": POOL, "paused": False}
    assert published == running + waiting  # admitted at once
    assert pair(api)["paused"] is False


def test_the_admin_pauses_and_resumes_a_pool(admin_user, make_client, pool_file, published):
    pool_file()
    _, api = make_client("lab")
    browser = Client()
    browser.force_login(admin_user)
    pool = Pool.objects.get(name=POOL)
    changelist = "/admin/pipelines/pool/"

    answer = browser.post(changelist, {"action": "pause", "_selected_action": [pool.pk]},
                          follow=True)
    assert "Paused 1 pool(s)" in answer.content.decode()
    ids = posted(api, 2)
    page = browser.get(f"{changelist}{pool.pk}/change/").content.decode()
    assert "pool pair paused" in page
    assert str(ids[1]) in page

    browser.post(changelist, {"action": "resume", "_selected_action": [pool.pk]})
    assert published == ids


# --- which teams may use a pool -----------------------------------------------------------------


def test_a_pool_open_to_listed_teams_does_not_exist_for_the_others(make_client, pool_file):
    pool_file("teams: [lab]\n")
    _, lab = make_client("lab")
    _, other = make_client("other")
    _, ops = make_client("ops", staff=True)

    assert POOL in {p["name"] for p in lab.get(POOLS).json()}
    assert PIPELINE in {p["name"] for p in lab.get("/api/pipelines/").json()}
    assert post(lab).status_code == 201

    assert POOL not in {p["name"] for p in other.get(POOLS).json()}
    assert PIPELINE not in {p["name"] for p in other.get("/api/pipelines/").json()}
    assert other.get(f"/api/pipelines/{PIPELINE}/").status_code == 404
    assert other.get(f"{POOLS}{POOL}/queue/").status_code == 404
    assert other.post(f"{POOLS}{POOL}/pause/").status_code == 404
    closed = post(other)
    unknown = other.post(PROCESSES, {"pipeline": "no-such-job"}, format="json")
    assert closed.status_code == unknown.status_code == 400
    assert (closed.json()["detail"].replace(PIPELINE, "NAME")
            == unknown.json()["detail"].replace("no-such-job", "NAME"))
    assert PIPELINE not in unknown.json()["detail"]  # not among the known pipelines either
    assert Process.objects.filter(team__slug="other").count() == 0

    assert POOL in {p["name"] for p in ops.get(POOLS).json()}  # those who run the service


# --- failures on the way ------------------------------------------------------------------------


def test_an_admitted_run_the_broker_refused_keeps_its_slot_and_the_next_round_sends_it(
        make_client, pool_file, monkeypatch):
    pool_file()
    _, api = make_client("lab")

    def broker_down(process):
        raise ConnectionError("the broker is away")

    monkeypatch.setattr(messaging, "send_job_spec", broker_down)
    ids = posted(api, 3)
    assert admitted(ids) == ids[:2]
    assert set(Process.objects.filter(pk__in=ids).values_list("state", flat=True)) == {
        State.PENDING}
    assert pair(api)["running"] == 2  # held while they wait for the broker

    sent: list[str] = []
    monkeypatch.setattr(messaging, "send_job_spec", lambda p: sent.append(str(p.pk)))
    relay_round()
    assert sorted(sent) == sorted(ids[:2])  # the third waits: the two hold the slots
    assert Process.objects.get(pk=ids[2]).state == State.PENDING


def test_a_stop_of_an_admitted_run_frees_its_slot(make_client, pool_file, published):
    pool_file()
    _, api = make_client("lab")
    ids = posted(api, 3)
    assert api.post(f"{PROCESSES}{ids[0]}/stop/").json()["state"] == State.STOPPED
    assert published == ids


# --- the pool files -----------------------------------------------------------------------------


@pytest.mark.parametrize("extra, named", [
    ("teams: lab\n", "teams: must be a list of team slugs"),
    ("teams: [lab]\nquotas: {bio: {running: 2}}\n", "quotas.bio: the pool is not open"),
    ("quotas: {default: {running: 0}}\n", "quotas.default.running: must be a whole number"),
    ("quotas: {lab: {queued: 2}}\n", "quotas.lab: must be a mapping with running, waiting"),
    ("weights: {lab: -1}\n", "weights.lab: must be a number greater than 0"),
    ("quota: {lab: {running: 2}}\n", "unknown keys: quota"),
])
def test_a_pool_file_with_bad_teams_quotas_or_weights_is_refused_by_name(
        pool_file, extra, named, tmp_path):
    folder = pool_file()
    (folder / "pools" / f"{POOL}.yaml").write_text(
        f"name: {POOL}\ntarget: local\ncapacity: 2\n{extra}")
    report = pipelines_load(folder)
    assert named in report.errors[f"pools/{POOL}.yaml"]
