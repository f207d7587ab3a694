"""The beat's poll round at scale: a Slurm pool's live processes go in one message (one
squeue answers for them all), a host-bound pool's in messages of at most 1,000 (a message
with fewer lists every handle of the host: the orphan sweep depends on it), and the round
reads the processes in a fixed number of queries, however many there are."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.pipelines.models import PipelineVersion, Pool
from apps.processes import messaging
from apps.processes.models import Process
from apps.processes.polling import pools_poll
from apps.teams.models import Team
from workers.contract import State


@pytest.fixture
def polls(monkeypatch) -> list:
    sent: list = []
    monkeypatch.setattr(messaging, "send_poll", sent.append)
    return sent


def live(pipeline: str, count: int, host: str = "") -> None:
    version = PipelineVersion.objects.select_related("pipeline").filter(
        pipeline__name=pipeline).order_by("-number").first()
    owner, _ = get_user_model().objects.get_or_create(username="poller")
    team, _ = Team.objects.get_or_create(slug="poller", defaults={"name": "poller"})
    now = timezone.now()
    Process.objects.bulk_create(
        Process(id=(pid := uuid.uuid4()), pipeline=version.pipeline, pipeline_version=version,
                owner=owner, team=team, used_config={}, target=version.target,
                pool=version.pool.name, state=State.RUNNING, host=host,
                handle=f"{n + 1}:orch-{pid}:1700000000", admitted_at=now, queued_at=now,
                submitted_at=now, started_at=now)
        for n in range(count))


def test_a_slurm_pools_live_processes_go_in_one_message(pipelines, polls):
    live("hello-slurm", 2500)
    pools_poll()
    (request,) = [r for r in polls if r.pool == "slurm-main"]
    assert (request.target, len(request.items)) == ("slurm", 2500)
    assert request.complete


def test_a_cluster_pool_with_nothing_live_still_gets_its_settings_every_round(pipelines,
                                                                              polls):
    """Its workers check their cluster with those settings and say what they found with each
    heartbeat: /api/health/ shows a slurmrestd that is away before any run is posted."""
    live("hello-docker", 1, host="node1")
    pools_poll()
    by_pool = {r.pool: r for r in polls}
    assert set(by_pool) == {"slurm-main", "slurm-rest", "docker-main"}  # not local, not ecs
    rest = by_pool["slurm-rest"]
    assert rest.items == []
    assert rest.pool_settings == Pool.objects.get(name="slurm-rest").settings
    assert rest.pool_settings["url"] == "http://127.0.0.1:6820"
    assert by_pool["slurm-main"].items == []
    assert len(by_pool["docker-main"].items) == 1


def test_a_host_bound_pool_is_polled_in_messages_of_a_thousand(pipelines, polls):
    live("hello-docker", 2500, host="node1")
    pools_poll()
    polls[:] = [r for r in polls if r.pool == "docker-main"]
    assert sorted(len(r.items) for r in polls) == [500, 1000, 1000]
    assert [r.complete for r in polls if len(r.items) == 1000] == [False, False]


def test_the_round_reads_processes_in_a_fixed_number_of_queries(pipelines, polls):
    live("hello-slurm", 50)
    with CaptureQueriesContext(connection) as few:
        pools_poll()
    live("hello-slurm", 950)
    with CaptureQueriesContext(connection) as many:
        pools_poll()
    assert len(next(r for r in polls[::-1] if r.pool == "slurm-main").items) == 1000
    assert len(many.captured_queries) == len(few.captured_queries)
