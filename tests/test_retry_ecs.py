"""A retried ECS task on the emulator: Fargate Spot takes the capacity back (``stopCode``
SpotInterruption), the pipeline's ``retry`` starts attempt 2 as a task of its own, which
succeeds; and when the attempts run out, the process fails with the reason.

The control plane's own services (admission, job specs, polls, events) drive the real ECS
executor against moto's ECS in server mode (``testbed.ecs_emulator``), playing the worker's
part in this process: what the worker would send, it hands to ``events_apply``."""

from __future__ import annotations

import time

import pytest

from apps.pipelines.models import PipelineVersion, Pool
from apps.processes import messaging
from apps.processes.admission import admit
from apps.processes.events import events_apply
from apps.processes.models import Process
from apps.processes.services import process_create
from apps.teams.models import Team
from testbed.ecs_emulator import Container, serving
from workers.contract import Event, State, is_terminal
from workers.executors.ecs import EcsExecutor
from workers.signing import Sender

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore:.*ThrottlingException does not match")]

CLUSTER = "orch-retry"
POOL = "ecs-spot"
WORKER = Sender(pool=POOL, worker="ecs-spot@node1")
RUNS_UNTIL_STOPPED = Container(output=["working"], exit_code=None)


@pytest.fixture(scope="module")
def emulator():
    with serving(CLUSTER) as emulator:
        yield emulator


@pytest.fixture
def client_api(make_client):
    _app, api = make_client("spot-user")
    return Team.objects.get(slug="spot-user"), api


@pytest.fixture
def spot_process(emulator, pipelines, client_api):
    """spot_process(attempts) -> a process of hello-ecs, on the pool pointed at the emulator,
    retried on Spot interruptions."""
    pool = Pool.objects.get(name=POOL)
    subnets, groups = emulator.network
    pool.settings = {**pool.settings, "cluster": CLUSTER, "region": emulator.region,
                     "endpoint_url": emulator.url, "subnets": subnets,
                     "security_groups": groups, "log_settle_s": 0}
    pool.save(update_fields=["settings"])
    version = PipelineVersion.objects.filter(pipeline__name="hello-ecs").latest("number")
    emulator.known_images.add(version.run["image"])

    def make(attempts: int) -> Process:
        version.retry = {"attempts": attempts, "on": ["spot_interruption"], "exit_codes": [],
                         "delay_s": 0}
        version.save(update_fields=["retry"])
        process, _ = process_create(pipeline="hello-ecs", used_config={},
                                    team=client_api[0])
        emulator.script(str(process.pk), RUNS_UNTIL_STOPPED)
        return process

    return make


def submit(process: Process) -> str:
    """Admission (a retry is admitted as soon as the end that started it is applied), then
    the worker's submit of the job spec it was sent; returns the handle."""
    admit(POOL)
    process = Process.objects.select_related("pipeline", "pipeline_version__pool").get(
        pk=process.pk)
    assert process.admitted_at is not None
    spec = messaging.job_spec(process)
    submission = EcsExecutor(POOL, spec.pool_settings).submit(spec)
    events_apply([Event(spec.process_id, "ecs", state=State.SUBMITTED, handle=submission.handle,
                        attempt=spec.attempt)], WORKER)
    return submission.handle


def poll_until(process: Process, done, timeout: float = 60) -> Process:
    """The poll loop's rounds for ``process`` until ``done(process)``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process = Process.objects.select_related("pipeline_version__pool").get(pk=process.pk)
        if done(process):
            return process
        if process.handle:
            executor = EcsExecutor(POOL, process.pipeline_version.pool.settings)
            events_apply(executor.poll([messaging.poll_item(process)]), WORKER)
        time.sleep(0.2)
    pytest.fail(f"{process.pk} did not get there; it is {process.state}: {process.message}")


def interrupted(emulator, process: Process) -> Process:
    """Run the current attempt's task until RUNNING, then have Spot take it back."""
    handle = submit(process)
    poll_until(process, lambda p: p.state == State.RUNNING)
    emulator.interrupt_spot(handle)
    return poll_until(process, lambda p: p.state != State.RUNNING)


def test_a_spot_interruption_is_retried_and_the_second_task_succeeds(emulator, spot_process,
                                                                       client_api):
    process = spot_process(attempts=3)
    process = interrupted(emulator, process)
    assert process.state == State.PENDING
    assert process.attempt == 2
    assert "retry: attempt 2 of 3 after spot_interruption" in process.message
    emulator.script(str(process.pk), Container(output=["hello again"], exit_code=0))
    handle = submit(process)
    process = poll_until(process, lambda p: is_terminal(p.state))
    assert process.state == State.SUCCEEDED, process.message

    body = client_api[1].get(f"/api/processes/{process.pk}/").json()
    one, two = body["attempts"]
    assert (one["state"], one["reason"]) == ("FAILED", "spot_interruption")
    assert "Spot" in one["message"]
    assert (two["state"], two["handle"]) == ("SUCCEEDED", handle)
    assert one["handle"] != handle
    assert "hello again" in client_api[1].get(f"/api/processes/{process.pk}/logs/").json()[
        "text"]


def test_attempts_exhausted_end_failed_with_the_reason(emulator, spot_process):
    process = spot_process(attempts=2)
    process = interrupted(emulator, process)
    assert (process.state, process.attempt) == (State.PENDING, 2)
    process = interrupted(emulator, process)
    assert process.state == State.FAILED
    assert process.attempt == 2
    assert "spot_interruption" in process.message
    assert "attempt 2 of 2" in process.message
    assert list(process.attempts.values_list("state", "reason")) == [
        ("FAILED", "spot_interruption"), ("FAILED", "spot_interruption")]
