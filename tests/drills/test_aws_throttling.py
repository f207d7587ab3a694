"""Drill 9: AWS throttling and 5xx answers while tasks run and end (the ECS target).

No AWS is reachable here: the target is moto's ECS and CloudWatch Logs in server mode with the
layer that plays ECS where moto does not (``testbed.ecs_emulator``), served from this
test process; the worker talks to it over HTTP through boto3 as it would to AWS. While the
tasks run, ``DescribeTasks`` and ``GetLogEvents`` answer "Rate exceeded" and 503 more often
than boto3's retries absorb, and the answers of some ``RunTask`` calls are lost after ECS
started the task. Polls that fail decide nothing; each process ends as its task did, with
exactly one task (a lost ``RunTask`` answer must not start a second), and none left running.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from testbed.ecs_emulator import (
    BUSYBOX,
    FAKE_CREDENTIALS,
    Container,
    EcsEmulator,
    serving,
)
from tests.drills.harness import Backend, Expect
from workers.contract import State, job_name

# ThrottlingException is AWS's common error, not in ECS's model: moto warns when it answers one.
pytestmark = [pytest.mark.drill, pytest.mark.e2e,
              pytest.mark.filterwarnings("ignore:.*ThrottlingException does not match")]

CLUSTER = "orch-drill"
# Answers refused per action: more throttles than a poll's attempts (the pool's poll_attempts,
# 3 by default), so whole polls fail.
THROTTLES = 10
LOST = 3
ROLE = "arn:aws:iam::123456789012:role/orchestration-ecs"


class EcsBackend(Backend):
    """ECS tasks in the emulator. What each task's container does is told to the emulator as
    its process is created; a job is counted by the tasks ECS lists for its job name."""

    target = "ecs"
    pipeline = "drill-task"

    def __init__(self, emulator: EcsEmulator):
        self.pool = f"ecs-drill-{os.getpid()}"
        self.emulator = emulator
        self.containers: dict[str, Container] = {}
        self.ecs = emulator.client("ecs")

    def write_pipelines(self, directory: Path) -> None:
        (directory / "pools").mkdir(parents=True, exist_ok=True)
        subnets, groups = self.emulator.network
        pool = {"name": self.pool, "target": "ecs", "capacity": 50, "queued_limit": "1m",
                "settings": {
                    "cluster": CLUSTER, "region": self.emulator.region,
                    "endpoint_url": self.emulator.url, "launch_type": "FARGATE",
                    "subnets": subnets, "security_groups": groups,
                    "execution_role_arn": ROLE, "task_role_arn": ROLE,
                    "log_group": f"/orchestration/{self.pool}", "log_settle_s": 0}}
        (directory / "pools" / f"{self.pool}.yaml").write_text(json.dumps(pool))
        definition = {
            "name": self.pipeline, "version": "1", "target": "ecs", "pool": self.pool,
            "description": "A task the emulator plays: prints its start, then ends as told.",
            "run": {"image": BUSYBOX, "command": ["sh", "-c", 'echo "start $ORCH_PROCESS_ID"']},
            "resources": {"cpus": 0.25, "memory": "512M", "time_limit": "10m"},
            "config_schema": {"type": "object", "additionalProperties": False,
                              "properties": {"exit_code": {"type": "integer"}}},
            "defaults": {"exit_code": 0},
        }
        (directory / f"{self.pipeline}.yaml").write_text(json.dumps(definition))

    def worker_env(self) -> dict[str, str]:
        return dict(FAKE_CREDENTIALS)

    def after_submit(self, process_id: str, config: dict) -> None:
        # Runs until end() says otherwise.
        self.containers[process_id] = Container(output=[f"start {process_id}"], exit_code=None)
        self.emulator.script(process_id, self.containers[process_id])

    def end(self, process_id: str, exit_code: int) -> None:
        """The task's container exits with ``exit_code`` (seen on the next describe)."""
        self.containers[process_id].exit_code = exit_code

    def _tasks(self, **filters) -> list[str]:
        arns = []
        for status in ("RUNNING", "STOPPED"):
            pages = self.ecs.get_paginator("list_tasks").paginate(
                cluster=CLUSTER, desiredStatus=status, **filters)
            arns += [arn for page in pages for arn in page["taskArns"]]
        return arns

    def jobs(self, process_id: str) -> int:
        return len(set(self._tasks(startedBy=job_name(process_id))))

    def orphans(self) -> list[str]:
        pages = self.ecs.get_paginator("list_tasks").paginate(cluster=CLUSTER,
                                                              desiredStatus="RUNNING")
        return [arn for page in pages for arn in page["taskArns"]]

    def cleanup(self) -> None:
        self.emulator.clear()
        for arn in self.orphans():
            self.ecs.stop_task(cluster=CLUSTER, task=arn, reason="drill cleanup")


@pytest.fixture
def emulator():
    with serving(CLUSTER) as emulator:
        yield emulator


def test_aws_throttling_and_5xx_during_polls(emulator, drill_for, record):
    backend = EcsBackend(emulator)
    drill = drill_for(backend)
    drill.start()
    first = drill.submit(14)
    failing = drill.submit(2)
    drill.wait_states(first + failing, {State.RUNNING})

    emulator.throttle("DescribeTasks", THROTTLES)  # more than one poll's attempts absorb
    emulator.lose_answer("DescribeTasks", LOST)
    emulator.throttle("GetLogEvents", THROTTLES)
    emulator.lose_answer("RunTask", LOST)  # ECS starts these tasks; their answers are lost
    late = drill.submit(4)
    for pid in first:
        backend.end(pid, 0)
    for pid in failing:
        backend.end(pid, 3)
    time.sleep(2)
    assert not {State.LOST, State.FAILED} & set(drill.states(first).values()), \
        "a refused poll must decide nothing"
    for pid in late:
        backend.end(pid, 0)

    expected = {pid: Expect(State.SUCCEEDED, 0) for pid in first + late}
    expected.update({pid: Expect(State.FAILED, 3) for pid in failing})
    summary = drill.check(expected)
    calls = emulator.calls
    summary["fault"] = (
        f"DescribeTasks {THROTTLES} throttled + {LOST} answers lost, GetLogEvents {THROTTLES} "
        f"throttled, RunTask {LOST} answers lost; calls made: "
        f"{calls[('ecs', 'DescribeTasks')]} DescribeTasks, {calls[('logs', 'GetLogEvents')]} "
        f"GetLogEvents, {calls[('ecs', 'RunTask')]} RunTask")
    record(summary)
