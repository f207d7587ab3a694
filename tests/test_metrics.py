"""GET /metrics: the figures an operator alerts on, as a Prometheus scraper reads them, and
the token that keeps them from everyone else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.pipelines.models import Pool, Worker
from apps.processes.models import Process, ProcessEvent
from workers.contract import State

pytestmark = pytest.mark.django_db

TOKEN = "scrape-me-0123456789"


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    answer = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert answer.status_code == 200, answer.content
    assert answer["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(answer.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def post_runs(api, count: int) -> list[Process]:
    made = []
    for n in range(count):
        body = {"pipeline": "hello", "used_config": {"name": f"m{n}"}}
        answer = api.post("/api/processes/", body, format="json")
        assert answer.status_code == 201, answer.content
        made.append(Process.objects.get(pk=answer.json()["id"]))
    return made


def test_without_a_configured_token_there_is_no_metrics_route(settings):
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", TOKEN])
def test_a_scraper_without_the_token_is_refused(metrics_on, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    answer = Client().get("/metrics", **extra)
    assert answer.status_code == 401
    assert answer["WWW-Authenticate"].startswith("Bearer")
    assert b"orch_processes" not in answer.content


def test_processes_by_state_pool_and_team_and_what_each_pool_holds(metrics_on, api):
    first, *_waiting = post_runs(api, 3)  # on the local pool, waiting (nothing admitted)
    now = timezone.now()
    Process.objects.filter(pk=first.pk).update(
        state=State.RUNNING, admitted_at=now, started_at=first.created_at + timedelta(seconds=3))
    Pool.objects.filter(name="local").update(paused=True)

    samples = scrape()
    team = ("team", "alice")
    assert samples[("orch_processes", (("pool", "local"), ("state", "RUNNING"), team))] == 1
    assert samples[("orch_processes", (("pool", "local"), ("state", "PENDING"), team))] == 2
    assert samples[("orch_pool_running", (("pool", "local"),))] == 1
    assert samples[("orch_pool_waiting", (("pool", "local"),))] == 2
    assert samples[("orch_pool_paused", (("pool", "local"),))] == 1
    assert samples[("orch_pool_capacity", (("pool", "local"),))] == 4
    # The running one waited 3 s: above the 2 s bucket, within 5 s.
    wait = "orch_process_wait_seconds_bucket"
    assert samples[(wait, (("le", "2.0"), ("pool", "local")))] == 0
    assert samples[(wait, (("le", "5.0"), ("pool", "local")))] == 1
    assert samples[("orch_process_wait_seconds_count", (("pool", "local"),))] == 1
    assert samples[("orch_process_wait_seconds_sum", (("pool", "local"),))] == pytest.approx(3)


def test_run_durations_by_final_state(metrics_on, api):
    quick, slow, _waiting = post_runs(api, 3)
    for process, seconds, state in ((quick, 4, State.SUCCEEDED), (slow, 400, State.FAILED)):
        started = process.created_at + timedelta(seconds=1)
        Process.objects.filter(pk=process.pk).update(
            state=state, started_at=started, finished_at=started + timedelta(seconds=seconds))

    samples = scrape()
    run = "orch_process_run_seconds"
    ok = (("pool", "local"), ("state", "SUCCEEDED"))
    failed = (("pool", "local"), ("state", "FAILED"))
    assert samples[(f"{run}_bucket", (("le", "5.0"), *ok))] == 1
    assert samples[(f"{run}_bucket", (("le", "300.0"), *failed))] == 0
    assert samples[(f"{run}_bucket", (("le", "900.0"), *failed))] == 1
    assert samples[(f"{run}_sum", failed)] == pytest.approx(400)
    assert (f"{run}_count", (("pool", "local"), ("state", "PENDING"))) not in samples


def test_event_lag_and_live_workers(metrics_on, api):
    (process,) = post_runs(api, 1)
    seen = timezone.now() - timedelta(seconds=7)
    ProcessEvent.objects.create(process=process, from_state=State.PENDING,
                                to_state=State.QUEUED, at=seen, source="worker:test")
    now = timezone.now()
    Worker.objects.create(pool="local", host="node1", name="a", target="local", last_seen=now)
    Worker.objects.create(pool="local", host="node2", name="b", target="local",
                          last_seen=now - timedelta(hours=1))  # silent for an hour: not alive

    samples = scrape()
    assert samples[("orch_workers_alive", (("pool", "local"),))] == 1
    lag = "orch_event_lag_seconds_bucket"
    queued = ("to_state", "QUEUED")
    assert samples[(lag, (("le", "5.0"), queued))] == 0
    assert samples[(lag, (("le", "10.0"), queued))] == 1


def test_poll_cycles_and_failures_per_pool_from_each_workers_heartbeat(metrics_on, monkeypatch):
    """A worker counts its polls of the target (a failed one too) and sends the counts with
    its heartbeat; /metrics shows them per pool and worker."""
    from workers import poll_stats, tasks
    from workers.contract import Heartbeat, PollItem, PollRequest
    from workers.executors.base import ExecutorError

    class Target:
        def __init__(self):
            self.answers = [ExecutorError("squeue: cannot reach slurmctld"), []]

        def poll(self, items):
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

    monkeypatch.setattr(poll_stats, "_stats", {})
    target = Target()
    monkeypatch.setattr(tasks, "get_executor", lambda *args: target)
    request = PollRequest(pool="slurm-main", target="slurm", host=None,
                          items=[PollItem(process_id="p1", handle="7:orch-p1:1700000000")],
                          pool_settings={})
    assert tasks._poll(request) == 0  # failed: nothing reported
    assert tasks._poll(request) == 0  # answered, no news

    from apps.pipelines.services import worker_heartbeat
    worker_heartbeat(Heartbeat(pool="slurm-main", host="login1", target="slurm", version="t",
                               capacity=4, busy=0, name="w@login1",
                               polls=poll_stats.snapshot("slurm-main")))
    samples = scrape()
    labels = (("pool", "slurm-main"), ("worker", "w@login1"))
    assert samples[("orch_poll_cycles_total", labels)] == 2
    assert samples[("orch_poll_failures_total", labels)] == 1
    assert samples[("orch_poll_seconds_total", labels)] >= 0
    assert ("orch_poll_last_cycle_seconds", labels) in samples


def test_a_heartbeat_keeps_only_the_known_poll_counts():
    from apps.pipelines.services import poll_counts

    assert poll_counts({"cycles": 3, "failures": True, "seconds": "1", "note": "x" * 10**6,
                        "last_seconds": 0.5}) == {"cycles": 3, "last_seconds": 0.5}
    assert poll_counts(["cycles"]) == {}
