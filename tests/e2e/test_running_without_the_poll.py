"""RUNNING is seen without the poll loop: with the beat stopped (no poll is ever sent), a
Slurm job queued by sbatch reaches RUNNING through its worker's follow-ups, and a local job
through its submission (the starter knows it started). Real processes: the API in the test
process, RabbitMQ, the control consumer, the local and slurm-main workers, the Slurm cluster."""

from __future__ import annotations

import pytest

from apps.processes.models import ProcessEvent
from tests.e2e.client import post_process, wait_for_state
from workers.contract import State

pytest_plugins = ["tests.e2e.slurm_fixtures"]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def no_polls(control_plane):
    """The beat stopped for the test: nothing polls; started again after."""
    beat = control_plane[1]
    beat.stop()
    yield
    beat.start()


def test_a_slurm_job_is_running_without_any_poll(no_polls, slurm_run):
    pid = slurm_run("e2e-sleep-slurm", {"seconds": 60})
    process = wait_for_state(pid, State.RUNNING, timeout=30)
    assert process.started_at is not None
    assert process.submitted_at < process.started_at
    (running,) = ProcessEvent.objects.filter(process_id=pid, to_state=State.RUNNING)
    assert running.source.startswith("worker")  # sent by the worker that submitted it


def test_a_local_job_is_running_without_any_poll(no_polls, api, local_worker):
    pid = post_process(api, "sleep", {"seconds": 30})
    process = wait_for_state(pid, State.RUNNING, timeout=30)
    assert process.started_at is not None
    api.post(f"/api/processes/{pid}/stop/")
