"""Starting a process's task, once: found by its name before one is started, started with a
token that makes a repeated ``run_task`` answer with the task it already started.

``run_task`` gets container overrides (command, environment with ``ORCH_CONFIG``, cpu, memory,
GPUs), ``startedBy`` = the job name, tags carrying the process id, and a ``clientToken`` derived
from the job name: ECS answers a repeated call with the task it already started. The job name
is the attempt's (``JobSpec.job_name``): a retry's task is a task of its own.
:func:`find_task` looks the job name up with ``list_tasks`` first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from ...contract import JobSpec, job_name
from ..base import ExecutorError, Submission
from . import data
from .aws import call, client
from .pool import EcsPool
from .task_definitions import command, cpu_units, sizes, tag_value, task_definition

log = logging.getLogger(__name__)

OVERRIDES_LIMIT = 8192  # ECS's limit on the JSON of a run_task ``overrides``


def find_task(pool: EcsPool, spec: JobSpec) -> Submission | None:
    """The task already started for ``spec``'s attempt, found by its ``startedBy``."""
    started_by = _started_by(spec)
    # ECS lists tasks whose desired status is RUNNING unless asked for STOPPED ones.
    for desired in ("RUNNING", "STOPPED"):
        arns = call(
            client(pool, "ecs"), "list_tasks", cluster=pool.cluster, startedBy=started_by,
            desiredStatus=desired,
        )["taskArns"]
        if arns:
            if len(arns) > 1:
                log.warning("process %s has %d tasks: %s", spec.process_id, len(arns), arns)
            return Submission(sorted(arns)[0], message=f"task already started ({desired})")
    return None


def run_task(pool: EcsPool, spec: JobSpec) -> Submission:
    """One ``run_task`` (botocore retries it with the same client token)."""
    overrides = _overrides(pool, spec)
    definition = task_definition(pool, spec)
    kwargs: dict[str, Any] = dict(
        cluster=pool.cluster, taskDefinition=definition, count=1, overrides=overrides,
        startedBy=_started_by(spec), clientToken=client_token(spec.process_id, spec.attempt),
        tags=[
            {"key": "orch:process-id", "value": spec.process_id},
            {"key": "orch:pool", "value": tag_value(pool.name)},
            {"key": "orch:pipeline", "value": tag_value(spec.pipeline)},
        ],
    )
    if pool.launch_type:
        kwargs["launchType"] = pool.launch_type
    elif pool.strategy:
        kwargs["capacityProviderStrategy"] = pool.strategy
    if pool.network_mode == "awsvpc":
        kwargs["networkConfiguration"] = pool.network()
    if pool.platform_version:
        kwargs["platformVersion"] = pool.platform_version
    answer = call(client(pool, "ecs"), "run_task", **kwargs)
    if answer.get("tasks"):
        task = answer["tasks"][0]
        where = task.get("capacityProviderName") or task.get("launchType") or "ECS"
        return Submission(task["taskArn"], message=f"task started on {where}")
    reasons = "; ".join(
        f"{f.get('reason')}{': ' + f['detail'] if f.get('detail') else ''}"
        for f in answer.get("failures") or []
    )
    # No capacity (Fargate "Capacity is unavailable", RESOURCE:*, no agent): retried later.
    raise ExecutorError(f"ECS started no task for {spec.process_id}: {reasons or 'no reason'}")


def _overrides(pool: EcsPool, spec: JobSpec) -> dict[str, Any]:
    """The run's container overrides; refused for good when ECS could never take them."""
    if spec.resources.gpus and pool.fargate:
        raise ExecutorError(
            f"pool {pool.name} runs on Fargate, which has no GPUs; "
            "use a pool with an EC2 capacity provider for gpus > 0",
            permanent=True,
        )
    env = {**spec.env, "ORCH_PROCESS_ID": spec.process_id, "ORCH_PIPELINE": spec.pipeline,
           "ORCH_CONFIG": json.dumps(spec.config, sort_keys=True)}
    staged: list[dict[str, Any]] = []
    if data.uses_data(spec):  # the config with the staged paths; what the stagers copy
        job_env, staged = data.run_overrides(spec)
        env.update(job_env)
    cpu, memory = sizes(pool, spec)
    container: dict[str, Any] = {
        "name": pool.container_name, "command": command(spec),
        "environment": [{"name": k, "value": str(v)} for k, v in env.items()],
        "cpu": cpu_units(spec), "memory": spec.resources.memory_mb,
    }
    if spec.resources.gpus:
        container["resourceRequirements"] = [{"type": "GPU", "value": str(spec.resources.gpus)}]
    overrides: dict[str, Any] = {"containerOverrides": [container, *staged]}
    if pool.fargate:
        overrides.update(cpu=str(cpu), memory=str(memory))
    size = len(json.dumps(overrides, separators=(",", ":")))
    if size > OVERRIDES_LIMIT:
        raise ExecutorError(
            f"the run's command, environment and config take {size} characters in the ECS "
            f"overrides, over ECS's limit of {OVERRIDES_LIMIT}; pass big inputs by reference",
            permanent=True,
        )
    return overrides


def client_token(process_id: str, attempt: int = 1) -> str:
    """run_task's idempotency token (up to 64 characters): the job name, or its hash."""
    name = job_name(process_id, attempt)
    if len(name) <= 64 and all(33 <= ord(c) <= 126 for c in name):
        return name
    hashed = process_id if attempt <= 1 else name  # attempt 1's token as it always was
    return "orch-" + hashlib.sha256(hashed.encode()).hexdigest()[:59]


def _started_by(spec: JobSpec) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", spec.job_name)[:128]
