"""GPU slots (issue 18): a pool that declares GPUs admits a process only when its GPUs are
free, gives it free device ids (in the API, the job spec), never the same device to two
running jobs, and says when a process waits for GPUs. Through the API as a client sees it;
slots free by the end events a worker sends, applied as the control consumer applies them.

Real transactions (admission runs once a create commits), on PostgreSQL; job specs are
recorded instead of published."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.conf import settings

from apps.pipelines.services import pipelines_load
from apps.processes import messaging
from apps.processes.events import events_apply
from apps.processes.gpu_slots import place
from workers.contract import Event, JobSpec, State
from workers.signing import Sender

pytestmark = pytest.mark.django_db(transaction=True)

PROCESSES = "/api/processes/"
POOL = "gpu-pair"
WORKER = Sender(pool=POOL, worker=f"{POOL}@node1")

PIPELINE = """
name: {name}
target: docker
pool: gpu-pair
run:
  image: orchestration/busybox:latest
  command: ["true"]
resources: {{gpus: {gpus}}}
"""


@pytest.fixture
def specs(monkeypatch, relay_on_wake) -> dict[str, JobSpec]:
    """The job specs published, by process id (nothing reaches the broker)."""
    sent: dict[str, JobSpec] = {}

    def record(process):
        sent[str(process.pk)] = messaging.job_spec(process)

    monkeypatch.setattr(messaging, "send_job_spec", record)
    return sent


@pytest.fixture
def gpu_pool(tmp_path, specs):
    """The shipped pipelines plus the docker pool ``gpu-pair``: capacity 4, GPUs "0" and "1",
    and its pipelines ``one-gpu`` and ``two-gpus``."""
    folder = tmp_path / "pipelines"
    shutil.copytree(Path(settings.PIPELINES_DIR), folder)
    (folder / "pools" / f"{POOL}.yaml").write_text(
        f"name: {POOL}\ntarget: docker\ncapacity: 4\ngpus: ['0', '1']\n"
        "max_resources: {gpus: 2}\nsettings: {}\n")
    (folder / "one-gpu.yaml").write_text(PIPELINE.format(name="one-gpu", gpus=1))
    (folder / "two-gpus.yaml").write_text(PIPELINE.format(name="two-gpus", gpus=2))
    report = pipelines_load(folder)
    assert not report.errors, report.errors


def posted(api, pipeline: str, count: int = 1, **body) -> list[str]:
    ids = []
    for _ in range(count):
        answer = api.post(PROCESSES, {"pipeline": pipeline, **body}, format="json")
        assert answer.status_code == 201, answer.content
        ids.append(answer.json()["id"])
    return ids


def shown(api, pid: str) -> dict:
    return api.get(f"{PROCESSES}{pid}/").json()


def end(pid: str) -> None:
    """The pool's worker reports the job of ``pid`` ended, as a poll answer would."""
    events_apply([Event(process_id=pid, source="test", state=State.SUCCEEDED,
                        handle=f"job-{pid}", host=WORKER.host, exit_code=0)], WORKER)


def gpu_figures(api) -> tuple[int, int]:
    pool = next(p for p in api.get("/api/pools/").json() if p["name"] == POOL)
    return pool["gpus"], pool["gpus_in_use"]


def test_two_one_gpu_runs_get_different_devices_and_the_third_waits_for_one(
        api, gpu_pool, specs):
    first, second, third = posted(api, "one-gpu", 3)

    devices = [shown(api, pid)["gpu_devices"] for pid in (first, second)]
    assert sorted(devices) == [["0"], ["1"]]
    assert [specs[pid].gpu_devices for pid in (first, second)] == devices
    waiting = shown(api, third)
    assert waiting["state"] == State.PENDING
    assert waiting["gpu_devices"] == []
    assert waiting["waiting_for"] == "pool gpu-pair GPUs 2/2 in use; next to go"
    assert third not in specs
    assert gpu_figures(api) == (2, 2)
    [queued] = api.get(f"/api/pools/{POOL}/queue/").json()["results"]
    assert queued["waiting_for"] == "pool gpu-pair GPUs 2/2 in use; next to go"

    end(second)  # its device frees: the third goes, on that device
    assert shown(api, third)["gpu_devices"] == devices[1]
    assert specs[third].gpu_devices == devices[1]
    assert shown(api, third)["waiting_for"] is None
    assert gpu_figures(api) == (2, 2)
    end(first)
    assert gpu_figures(api) == (2, 1)


def test_a_two_gpu_run_is_not_passed_over_by_one_gpu_runs_behind_it(api, gpu_pool, specs):
    [small] = posted(api, "one-gpu")
    [big] = posted(api, "two-gpus")
    [later] = posted(api, "one-gpu")

    assert shown(api, small)["gpu_devices"] == ["0"]
    assert shown(api, big)["waiting_for"] == "pool gpu-pair GPUs 1/2 in use; next to go"
    # One GPU is free, but the run before it in line needs two: it waits behind that one.
    assert shown(api, later)["waiting_for"] == "pool gpu-pair GPUs 1/2 in use; behind 1 process"
    assert set(specs) == {small}

    end(small)
    assert shown(api, big)["gpu_devices"] == ["0", "1"]
    assert specs[big].gpu_devices == ["0", "1"]
    assert shown(api, later)["waiting_for"] == "pool gpu-pair GPUs 2/2 in use; next to go"
    end(big)
    assert shown(api, later)["gpu_devices"] == ["0"]


def test_a_run_that_asks_no_gpu_goes_without_a_device(api, gpu_pool, specs):
    two = posted(api, "one-gpu", 2)
    [cpu_only] = posted(api, "one-gpu", resources={"gpus": 0})
    assert shown(api, cpu_only)["state"] == State.QUEUED
    assert shown(api, cpu_only)["gpu_devices"] == []
    assert specs[cpu_only].gpu_devices == []
    assert sorted(d for pid in two for d in specs[pid].gpu_devices) == ["0", "1"]


def test_placing_takes_free_devices_in_order_and_stops_at_the_first_that_does_not_fit():
    devices = ["0", "1", "2"]
    assert place(devices, {"1"}, [("a", 1), ("b", 0), ("c", 1)]) == (
        {"a": ["0"], "b": [], "c": ["2"]}, None)
    assert place(devices, {"1"}, [("a", 1), ("b", 2), ("c", 1)]) == ({"a": ["0"]}, 1)
    assert place(devices, set(), [("a", 4)]) == ({}, 0)
