"""A sweep end to end (issue 23): one POST of a small grid of the shipped ``hello`` pipeline,
run by the real stack (RabbitMQ, the control consumer, the beat and a local worker). Every run
ends SUCCEEDED with its own config, and the sweep counts them so."""

from __future__ import annotations

import pytest

from apps.processes.models import Process
from tests.e2e.client import logs_of, path_of, wait_for_end
from tests.e2e.stack import wait_until
from workers.contract import State

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

SWEEPS = "/api/sweeps/"


def test_a_small_grid_runs_every_combination_to_success(api, client, local_worker):
    wait_until(lambda: client.get("/api/health/").json()["pools"].get("local", {}).get("workers"),
               what="the control consumer and a worker of the local pool")
    answer = api.post(SWEEPS, {"pipeline": "hello", "base_config": {"greeting": "hi"},
                               "grid": {"name": ["Ada", "Grace"], "n": [1, 2]}},
                      format="json")
    assert answer.status_code == 202, answer.content
    sweep = answer.json()
    assert sweep["size"] == 4

    pids = [str(pk) for pk in Process.objects.filter(sweep_id=sweep["id"])
            .order_by("created_at").values_list("pk", flat=True)]
    ended = [wait_for_end(pid, timeout=120) for pid in pids]

    assert [p.state for p in ended] == [State.SUCCEEDED] * 4, [p.message for p in ended]
    assert [p.used_config for p in ended] == [
        {"name": name, "greeting": "hi", "n": n} for name in ("Ada", "Grace") for n in (1, 2)]
    for process in ended:
        assert f"Hello, {process.used_config['name']}!" in logs_of(api, str(process.pk))
        assert path_of(api, str(process.pk)) == [
            "PENDING", "QUEUED", "SUBMITTED", "RUNNING", "SUCCEEDED"]
    counts = api.get(f"{SWEEPS}{sweep['id']}/").json()["counts"]
    assert counts["SUCCEEDED"] == 4
    assert sum(counts.values()) == 4
