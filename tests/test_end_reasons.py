"""Why a target ended a job, as workers report it (``Event.reason``): the words a pipeline's
``retry.on`` names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workers.contract import END_REASONS, PollItem, State
from workers.executors.base import Executor, LogChunk, Status
from workers.executors.ecs.states import task_status
from workers.executors.slurm.states import JobRecord, slurm_status


def _stopped_task(stop_code: str, exit_code: int | None = None) -> dict:
    return {"lastStatus": "STOPPED", "desiredStatus": "STOPPED", "stopCode": stop_code,
            "stoppedReason": "Your Spot Task was interrupted.",
            "stoppedAt": datetime.now(UTC) - timedelta(minutes=5),
            "startedAt": datetime.now(UTC) - timedelta(minutes=10),
            "containers": [{"name": "job", "exitCode": exit_code}]}


def test_an_ecs_spot_interruption_is_reported_as_such():
    status = task_status(_stopped_task("SpotInterruption", 143), "job", settle_s=0)
    assert (status.state, status.reason) == (State.FAILED, "spot_interruption")
    assert "Spot" in status.message


@pytest.mark.parametrize("stop_code, exit_code", [
    ("EssentialContainerExited", 1), ("UserInitiated", 143), ("TaskFailedToStart", None)])
def test_other_ecs_ends_give_no_reason(stop_code, exit_code):
    assert task_status(_stopped_task(stop_code, exit_code), "job", settle_s=0).reason == ""


@pytest.mark.parametrize("slurm_state, reason", [
    ("PREEMPTED", "preempted"), ("NODE_FAIL", "node_failure"), ("BOOT_FAIL", "node_failure"),
    ("FAILED", ""), ("TIMEOUT", ""), ("CANCELLED by 0", "")])
def test_slurm_states_that_say_why_a_job_ended(slurm_state, reason):
    status = slurm_status(JobRecord("7", "orch-x", slurm_state, exit_code=1))
    assert status.reason == reason
    assert status.reason in ("", *END_REASONS)


class _Told(Executor):
    """An executor whose target says what the test tells it."""

    target = "local"

    def __init__(self, status: Status):
        super().__init__("local")
        self.status = status

    def find(self, spec):
        return None

    def start(self, spec):
        raise NotImplementedError

    def statuses(self, items):
        return {item.handle: self.status for item in items}

    def cancel(self, handle):
        pass

    def read_log(self, item, limit):
        return LogChunk()


def test_a_poll_carries_the_attempt_and_the_reason():
    executor = _Told(Status(State.FAILED, None, "preempted", reason="preempted"))
    (event,) = executor.poll([PollItem("p1", "h2", attempt=2)])
    assert (event.state, event.reason, event.attempt) == (State.FAILED, "preempted", 2)
    (event,) = _Told(Status(missing=True)).poll([PollItem("p1", "h2", attempt=2)])
    assert event.missing
    assert event.attempt == 2
