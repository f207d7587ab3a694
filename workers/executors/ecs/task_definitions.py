"""Task definitions: one per pipeline version, registered once and reused by every run of it.

Family ``<family_prefix><pipeline name>``, tagged with a fingerprint of everything registered
(image, command, resources, roles, logs). It is looked up (in memory, then the family's newest
revisions) before anything is registered, so a revision is registered once and reused by every
run of that version. What the container runs and its size are decided here, for the task
definition and for each run's overrides alike.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from typing import Any

from ...contract import JobSpec
from ..base import ExecutorError
from . import data
from .aws import AwsError, call, client
from .pool import EcsPool

log = logging.getLogger(__name__)

TD_REVISIONS_CHECKED = 10  # newest revisions of a family looked at before registering one
# Fargate's valid task sizes: cpu units -> memory MiB it accepts.
FARGATE_SIZES: dict[int, range] = {
    256: range(512, 2049, 512),
    512: range(1024, 4097, 1024),
    1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024),
    4096: range(8192, 30721, 1024),
    8192: range(16384, 61441, 4096),
    16384: range(32768, 122881, 8192),
}

# Shared by every executor instance of a worker process (a worker makes one per message): the
# task definitions found, by (endpoint, region, family, fingerprint).
_KNOWN: dict[tuple, str] = {}
_LOCK = threading.Lock()


def task_definition(pool: EcsPool, spec: JobSpec) -> str:
    """The ARN of the task definition for ``spec``'s pipeline version, registered once."""
    family = task_family(pool.family_prefix, spec.pipeline)
    args = _definition_args(pool, spec, family)
    fingerprint = hashlib.sha256(
        json.dumps({"version": spec.version, **args}, sort_keys=True).encode()
    ).hexdigest()[:24]
    key = (pool.endpoint_url, pool.region, family, fingerprint)
    with _LOCK:
        known = _KNOWN.get(key)
    if known:
        return known
    arn = _find_definition(pool, family, fingerprint)
    if arn is None:
        _ensure_log_group(pool)
        tags = [
            {"key": "orch:fingerprint", "value": fingerprint},
            {"key": "orch:pipeline", "value": tag_value(spec.pipeline)},
            {"key": "orch:pipeline-version", "value": str(spec.version)},
        ]
        answer = call(client(pool, "ecs"), "register_task_definition", **args, tags=tags)
        arn = answer["taskDefinition"]["taskDefinitionArn"]
        log.info("registered %s for %s version %s", arn, spec.pipeline, spec.version)
    with _LOCK:
        _KNOWN[key] = arn
    return arn


def _definition_args(pool: EcsPool, spec: JobSpec, family: str) -> dict[str, Any]:
    cpu, memory = sizes(pool, spec)
    container: dict[str, Any] = {
        "name": pool.container_name, "image": spec.image, "essential": True,
        "command": command(spec), "cpu": cpu_units(spec), "memory": spec.resources.memory_mb,
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": pool.log_group, "awslogs-region": pool.region,
            "awslogs-stream-prefix": pool.log_prefix,
        }},
    }
    if spec.resources.gpus:
        container["resourceRequirements"] = [{"type": "GPU", "value": str(spec.resources.gpus)}]
    containers, volumes = [container], list[dict[str, Any]]()
    if data.uses_data(spec):  # datasets in and outputs out through S3: see ``data``
        containers, volumes = data.definition_parts(pool, container)
    args: dict[str, Any] = {
        "family": family, "containerDefinitions": containers,
        "networkMode": pool.network_mode, "requiresCompatibilities": pool.compatibilities(),
    }
    if volumes:
        args["volumes"] = volumes
    if pool.fargate:
        args.update(cpu=str(cpu), memory=str(memory))
    for role, name in ((pool.execution_role_arn, "executionRoleArn"),
                       (pool.task_role_arn, "taskRoleArn")):
        if role:
            args[name] = role
    return args


def _find_definition(pool: EcsPool, family: str, fingerprint: str) -> str | None:
    """The newest ACTIVE revision of ``family`` tagged with ``fingerprint``, if any."""
    ecs = client(pool, "ecs")
    checked = set()
    try:
        latest = call(ecs, "describe_task_definition", taskDefinition=family, include=["TAGS"])
    except AwsError as exc:
        if exc.code not in ("ClientException", "InvalidParameterException"):
            raise
        return None  # the family does not exist yet
    arn = latest["taskDefinition"]["taskDefinitionArn"]
    if _tag(latest.get("tags"), "orch:fingerprint") == fingerprint:
        return arn
    checked.add(arn)
    arns = call(ecs, "list_task_definitions", familyPrefix=family, status="ACTIVE", sort="DESC",
                maxResults=TD_REVISIONS_CHECKED + 1)
    newest = sorted(arns["taskDefinitionArns"], key=_revision, reverse=True)
    for arn in [a for a in newest if a not in checked][:TD_REVISIONS_CHECKED]:
        found = call(ecs, "describe_task_definition", taskDefinition=arn, include=["TAGS"])
        if _tag(found.get("tags"), "orch:fingerprint") == fingerprint:
            return arn
    return None


def _ensure_log_group(pool: EcsPool) -> None:
    if not pool.create_log_group:
        return
    try:
        call(client(pool, "logs"), "create_log_group", logGroupName=pool.log_group)
    except AwsError as exc:
        if exc.code == "ResourceAlreadyExistsException":
            return
        if exc.code != "AccessDeniedException":
            raise
        log.warning("cannot create log group %s (%s); it must exist", pool.log_group, exc)


# --- what the container runs, and its size -----------------------------------------------------


def command(spec: JobSpec) -> list[str]:
    """The pipeline's command, else its script (``submit`` refused a job with neither:
    ``contract.job_refusals``). The user's config stays in ORCH_CONFIG."""
    if spec.command:
        return list(spec.command)
    return ["/bin/sh", "-c", spec.script]


def cpu_units(spec: JobSpec) -> int:
    return max(128, round(spec.resources.cpus * 1024))


def sizes(pool: EcsPool, spec: JobSpec) -> tuple[int, int]:
    """The task's cpu units and memory MiB: a valid Fargate size on Fargate, else as asked."""
    cpu, memory = cpu_units(spec), spec.resources.memory_mb
    if data.uses_data(spec):  # the stage containers' reservations too
        memory += 2 * data.STAGE_MEMORY_MB
    return fargate_size(cpu, memory) if pool.fargate else (cpu, memory)


def fargate_size(cpu: int, memory_mb: int) -> tuple[int, int]:
    """The smallest Fargate task size with at least ``cpu`` units and ``memory_mb`` MiB."""
    for units, memories in FARGATE_SIZES.items():
        if units >= cpu:
            fit = next((m for m in memories if m >= memory_mb), None)
            if fit is not None:
                return units, fit
    raise ExecutorError(
        f"no Fargate task size has {cpu} cpu units and {memory_mb} MiB", permanent=True
    )


# --- names and tags ------------------------------------------------------------------------------


def task_family(prefix: str, pipeline: str) -> str:
    """A task definition family from the pipeline name: letters, digits, - and _ only."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{prefix}{pipeline}")[:255]


def tag_value(value: str) -> str:
    return re.sub(r"[^\w .:/=+\-@]", "-", value)[:256]


def _tag(tags: list[dict[str, str]] | None, key: str) -> str | None:
    return next((t.get("value") for t in tags or [] if t.get("key") == key), None)


def _revision(arn: str) -> int:
    try:
        return int(arn.rsplit(":", 1)[-1])
    except ValueError:
        return 0
