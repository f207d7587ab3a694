"""The ECS target: a job is an AWS ECS task (Fargate, Fargate Spot or EC2 capacity).

- **Handle**: the task ARN. Every handle of a pool lives in the pool's ``cluster``.
- **Task definition**: one per pipeline version, family ``<family_prefix><pipeline name>``,
  tagged with a fingerprint of everything registered (image, command, resources, roles, logs).
  It is looked up (in memory, then the family's newest revisions) before anything is
  registered, so a revision is registered once and reused by every run of that version.
- **Run**: ``run_task`` with container overrides (command, environment with ``ORCH_CONFIG``,
  cpu, memory, GPUs), ``startedBy`` = the job name, tags carrying the process id, and a
  ``clientToken`` derived from the process id: ECS answers a repeated call with the task it
  already started. ``find`` looks the job name up with ``list_tasks`` first.
- **Poll**: one ``describe_tasks`` per 100 handles; lastStatus, desiredStatus, stopCode and
  the essential container's exit code are mapped in the tables below.
- **Logs**: CloudWatch Logs, stream ``<prefix>/<container>/<task id>`` of the pool's log
  group (the awslogs driver's naming), read by forward token; the token is the
  ``LogChunk.cursor`` the control plane hands back as ``PollItem.log_cursor``.
- **AWS errors**: botocore's adaptive retry mode retries throttling and transient errors with
  backoff and a client-side rate limit; what still fails raises ExecutorError (a failed poll
  decides nothing). Credentials come from the standard boto3 chain only.

Pool settings (``settings:`` of the pool YAML; only ``region`` or its environment is needed
when the cluster has a default capacity provider strategy):

=========================== =============================================================
cluster                     cluster name or ARN (``ORCH_ECS_CLUSTER``, else ``default``)
region                      AWS region (``AWS_REGION`` / ``AWS_DEFAULT_REGION``)
launch_type                 ``FARGATE``, ``EC2`` or ``EXTERNAL`` (not with a strategy)
capacity_provider_strategy  ``[{capacity_provider, weight, base}]``, e.g. Fargate Spot first
subnets, security_groups    for ``awsvpc`` networking (Fargate needs them)
assign_public_ip            ``ENABLED`` or ``DISABLED`` (default)
network_mode                ``awsvpc`` (default), ``bridge``, ``host``
execution_role_arn          role ECS uses to pull the image and write logs
task_role_arn               role the job's own code runs as
log_group                   CloudWatch log group (default ``/orchestration/<pool>``)
log_stream_prefix           awslogs stream prefix (default ``orch``)
create_log_group            create the log group when registering (default true)
platform_version            Fargate platform version (default: ECS's ``LATEST``)
family_prefix               task definition family prefix (default ``orch-``)
container_name              the job's container in the task definition (default ``main``)
max_attempts                attempts per AWS call, retries included (default 8)
poll_attempts               attempts of a poll's DescribeTasks and GetLogEvents (default 3):
                            a failed poll decides nothing and the next comes in seconds, so a
                            poll does not wait out a long throttle (8 held one for 36 s)
log_reads_per_poll          running tasks whose logs are read per poll (default 50)
log_settle_s                seconds after stoppedAt before the end is reported (default 5)
endpoint_url                only for emulators and tests (moto); never for AWS itself
=========================== =============================================================
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import threading
import time
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..contract import JobSpec, PollItem, State, job_name
from .base import (
    Executor,
    ExecutorError,
    LogChunk,
    Status,
    Submission,
    time_limit_passed,
)

log = logging.getLogger(__name__)

DESCRIBE_BATCH = 100  # describe_tasks takes at most 100 tasks
OVERRIDES_LIMIT = 8192  # ECS's limit on the JSON of a run_task ``overrides``
STOP_REASON = "orchestration: stop requested"
TIME_LIMIT_REASON = "orchestration: time limit"
LOG_PAGES_AT_END = 50  # get_log_events pages read at most per poll while draining a stopped task
TD_REVISIONS_CHECKED = 10  # newest revisions of a family looked at before registering one
# Settings that would carry credentials: refused, they come from the standard boto3 chain.
CREDENTIAL_KEYS = frozenset({
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "access_key",
    "secret_key", "credentials", "profile", "profile_name",
})
# AWS error codes no retry can fix: the request itself is wrong (fail the job with the text).
PERMANENT_CODES = frozenset({
    "ClientException", "InvalidParameterException", "ClusterNotFoundException",
    "UnsupportedFeatureException", "PlatformUnknownException",
    "PlatformTaskDefinitionIncompatibilityException", "AccessDeniedException",
    "AccessDeniedExceptionException", "UnrecognizedClientException",
})

# --- the mapping from ECS to our states, in one place ------------------------------------------

# lastStatus of a task that has not STOPPED. ``None``: on its way down (desiredStatus STOPPED);
# it counts as RUNNING if ECS gave it a startedAt, else it never ran and is still SUBMITTED.
LAST_STATUS: dict[str, State | None] = {
    "PROVISIONING": State.SUBMITTED,
    "PENDING": State.SUBMITTED,
    "ACTIVATING": State.SUBMITTED,
    "RUNNING": State.RUNNING,
    "DEACTIVATING": None,
    "STOPPING": None,
    "DEPROVISIONING": None,
}
# stopCode of a STOPPED task -> (state, what the user is told). ``None``: the essential
# container's exit code decides (0 SUCCEEDED, anything else FAILED).
STOP_CODES: dict[str, tuple[State, str] | None] = {
    "EssentialContainerExited": None,
    "UserInitiated": (State.STOPPED, "stopped"),
    "TaskFailedToStart": (State.FAILED, "the task failed to start"),
    "SpotInterruption": (State.FAILED, "interrupted: Spot capacity was reclaimed"),
    "TerminationNotice": (State.FAILED, "its container instance was terminated"),
    "ServiceSchedulerInitiated": (State.FAILED, "stopped by the ECS service scheduler"),
}
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
TASK_ARN = re.compile(r"^(arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task/([\w-]+/)?)?[\w-]{1,64}$")

# Shared by every executor instance of a worker process (a worker makes one per message):
# boto3 clients (and with them the adaptive rate limiter) and the task definitions found.
_CLIENTS: dict[tuple, Any] = {}
_TASK_DEFINITIONS: dict[tuple, str] = {}
_LOCK = threading.Lock()
_POLL_TURNS: dict[str, itertools.count] = {}


class AwsError(ExecutorError):
    """An AWS call failed after botocore's retries; ``code`` is AWS's error code."""

    def __init__(self, message: str, *, code: str = "", permanent: bool = False):
        super().__init__(message, permanent=permanent)
        self.code = code


class EcsExecutor(Executor):
    target = "ecs"

    def __init__(self, pool: str, settings: dict[str, Any] | None = None):
        super().__init__(pool, settings)
        s = self.settings
        refused = sorted(CREDENTIAL_KEYS & {k.lower() for k in s})
        if refused:
            raise ExecutorError(
                f"pool {pool}: settings {', '.join(refused)} are refused; AWS credentials come "
                "from the standard boto3 chain (environment, profile, instance or task role)",
                permanent=True,
            )
        self.cluster = s.get("cluster") or os.environ.get("ORCH_ECS_CLUSTER") or "default"
        self.region = (
            s.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        )
        self.endpoint_url = s.get("endpoint_url") or None
        self.launch_type = s.get("launch_type") or None
        self.strategy = [_strategy_item(x) for x in s.get("capacity_provider_strategy") or []]
        if self.launch_type and self.strategy:
            raise ExecutorError(
                f"pool {pool}: set launch_type or capacity_provider_strategy, not both",
                permanent=True,
            )
        self.network_mode = s.get("network_mode") or "awsvpc"
        self.container_name = s.get("container_name") or "main"
        self.log_group = s.get("log_group") or f"/orchestration/{pool}"
        self.log_prefix = s.get("log_stream_prefix") or "orch"
        self.max_attempts = int(s.get("max_attempts") or 8)
        self.poll_attempts = int(s.get("poll_attempts") or min(3, self.max_attempts))
        budget = s.get("log_reads_per_poll", 50)
        self.log_budget = None if budget is None else int(budget)
        self.log_settle_s = float(s.get("log_settle_s", 5))
        # Filled by statuses() for the poll in progress: which handles get a log read, which
        # are stopped (their logs are drained), which ECS is already stopping (no stop_task).
        self._log_due: set[str] | None = None
        self._draining: set[str] = set()
        self._stopping: set[str] = set()

    # --- AWS access: one client per service, one function for every call ------------------------

    @property
    def fargate(self) -> bool:
        """Tasks run on Fargate (no GPUs, fixed task sizes). With neither a launch type nor a
        strategy the cluster's default strategy applies, taken to be Fargate's."""
        if self.launch_type:
            return self.launch_type == "FARGATE"
        return not self.strategy or any(
            x["capacityProvider"].startswith("FARGATE") for x in self.strategy
        )

    def client(self, service: str, attempts: int | None = None):
        attempts = attempts or self.max_attempts
        if not self.region:
            raise ExecutorError(
                f"pool {self.pool}: no AWS region (set settings.region or AWS_REGION)",
                permanent=True,
            )
        key = (service, self.region, self.endpoint_url, attempts, self.pool)
        with _LOCK:
            if key not in _CLIENTS:
                config = Config(
                    region_name=self.region,
                    retries={"mode": "adaptive", "total_max_attempts": attempts},
                    connect_timeout=10, read_timeout=30, user_agent_extra="orchestration",
                )
                _CLIENTS[key] = boto3.session.Session().client(
                    service, config=config, endpoint_url=self.endpoint_url,
                )
            return _CLIENTS[key]

    @property
    def ecs(self):
        return self.client("ecs")

    @property
    def logs(self):
        return self.client("logs")

    @property
    def ecs_polling(self):
        return self.client("ecs", self.poll_attempts)

    @property
    def logs_polling(self):
        return self.client("logs", self.poll_attempts)

    def call(self, client, operation: str, **kwargs) -> dict[str, Any]:
        """Every AWS call goes through here: botocore retries (adaptive mode) and times out;
        what is left becomes an AwsError, permanent only when the request itself is wrong."""
        service = client.meta.service_model.service_name
        try:
            return getattr(client, operation)(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            text = f"{service} {operation}: {code}: {error.get('Message') or exc}"
            raise AwsError(text, code=code, permanent=code in PERMANENT_CODES) from exc
        except BotoCoreError as exc:  # no credentials, connection refused, read timeout ...
            raise AwsError(f"{service} {operation}: {exc}") from exc

    # --- submit -------------------------------------------------------------------------------

    def find(self, spec: JobSpec) -> Submission | None:
        started_by = _started_by(spec.process_id)
        # ECS lists tasks whose desired status is RUNNING unless asked for STOPPED ones.
        for desired in ("RUNNING", "STOPPED"):
            arns = self.call(
                self.ecs, "list_tasks", cluster=self.cluster, startedBy=started_by,
                desiredStatus=desired,
            )["taskArns"]
            if arns:
                if len(arns) > 1:
                    log.warning("process %s has %d tasks: %s", spec.process_id, len(arns), arns)
                return Submission(sorted(arns)[0], message=f"task already started ({desired})")
        return None

    def start(self, spec: JobSpec) -> Submission:
        overrides = self._overrides(spec)
        definition = self.task_definition(spec)
        kwargs: dict[str, Any] = dict(
            cluster=self.cluster, taskDefinition=definition, count=1, overrides=overrides,
            startedBy=_started_by(spec.process_id), clientToken=client_token(spec.process_id),
            tags=[
                {"key": "orch:process-id", "value": spec.process_id},
                {"key": "orch:pool", "value": _tag_value(self.pool)},
                {"key": "orch:pipeline", "value": _tag_value(spec.pipeline)},
            ],
        )
        if self.launch_type:
            kwargs["launchType"] = self.launch_type
        elif self.strategy:
            kwargs["capacityProviderStrategy"] = self.strategy
        if self.network_mode == "awsvpc":
            kwargs["networkConfiguration"] = self._network()
        if self.settings.get("platform_version"):
            kwargs["platformVersion"] = self.settings["platform_version"]
        answer = self.call(self.ecs, "run_task", **kwargs)
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

    def _overrides(self, spec: JobSpec) -> dict[str, Any]:
        if not spec.image:
            raise ExecutorError("the ecs target needs run.image in the pipeline", permanent=True)
        if spec.resources.gpus and self.fargate:
            raise ExecutorError(
                f"pool {self.pool} runs on Fargate, which has no GPUs; "
                "use a pool with an EC2 capacity provider for gpus > 0",
                permanent=True,
            )
        env = {**spec.env, "ORCH_PROCESS_ID": spec.process_id, "ORCH_PIPELINE": spec.pipeline,
               "ORCH_CONFIG": json.dumps(spec.config, sort_keys=True)}
        cpu, memory = self._sizes(spec)
        container: dict[str, Any] = {
            "name": self.container_name, "command": _command(spec),
            "environment": [{"name": k, "value": str(v)} for k, v in env.items()],
            "cpu": _cpu_units(spec), "memory": spec.resources.memory_mb,
        }
        if spec.resources.gpus:
            container["resourceRequirements"] = [{"type": "GPU", "value": str(spec.resources.gpus)}]
        overrides: dict[str, Any] = {"containerOverrides": [container]}
        if self.fargate:
            overrides.update(cpu=str(cpu), memory=str(memory))
        size = len(json.dumps(overrides, separators=(",", ":")))
        if size > OVERRIDES_LIMIT:
            raise ExecutorError(
                f"the run's command, environment and config take {size} characters in the ECS "
                f"overrides, over ECS's limit of {OVERRIDES_LIMIT}; pass big inputs by reference",
                permanent=True,
            )
        return overrides

    def _sizes(self, spec: JobSpec) -> tuple[int, int]:
        cpu, memory = _cpu_units(spec), spec.resources.memory_mb
        return fargate_size(cpu, memory) if self.fargate else (cpu, memory)

    def _network(self) -> dict[str, Any]:
        subnets = list(self.settings.get("subnets") or [])
        if not subnets:
            raise ExecutorError(
                f"pool {self.pool}: network_mode awsvpc needs settings.subnets", permanent=True
            )
        return {"awsvpcConfiguration": {
            "subnets": subnets,
            "securityGroups": list(self.settings.get("security_groups") or []),
            "assignPublicIp": self.settings.get("assign_public_ip") or "DISABLED",
        }}

    # --- task definitions: one per pipeline version -------------------------------------------

    def task_definition(self, spec: JobSpec) -> str:
        """The ARN of the task definition for ``spec``'s pipeline version, registered once."""
        family = task_family(self.settings.get("family_prefix", "orch-"), spec.pipeline)
        args = self._definition_args(spec, family)
        fingerprint = hashlib.sha256(
            json.dumps({"version": spec.version, **args}, sort_keys=True).encode()
        ).hexdigest()[:24]
        key = (self.endpoint_url, self.region, family, fingerprint)
        with _LOCK:
            known = _TASK_DEFINITIONS.get(key)
        if known:
            return known
        arn = self._find_definition(family, fingerprint)
        if arn is None:
            self._ensure_log_group()
            tags = [
                {"key": "orch:fingerprint", "value": fingerprint},
                {"key": "orch:pipeline", "value": _tag_value(spec.pipeline)},
                {"key": "orch:pipeline-version", "value": str(spec.version)},
            ]
            answer = self.call(self.ecs, "register_task_definition", **args, tags=tags)
            arn = answer["taskDefinition"]["taskDefinitionArn"]
            log.info("registered %s for %s version %s", arn, spec.pipeline, spec.version)
        with _LOCK:
            _TASK_DEFINITIONS[key] = arn
        return arn

    def _definition_args(self, spec: JobSpec, family: str) -> dict[str, Any]:
        cpu, memory = self._sizes(spec)
        container: dict[str, Any] = {
            "name": self.container_name, "image": spec.image, "essential": True,
            "command": _command(spec), "cpu": _cpu_units(spec), "memory": spec.resources.memory_mb,
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": self.log_group, "awslogs-region": self.region,
                "awslogs-stream-prefix": self.log_prefix,
            }},
        }
        if spec.resources.gpus:
            container["resourceRequirements"] = [{"type": "GPU", "value": str(spec.resources.gpus)}]
        args: dict[str, Any] = {
            "family": family, "containerDefinitions": [container],
            "networkMode": self.network_mode, "requiresCompatibilities": self._compatibilities(),
        }
        if self.fargate:
            args.update(cpu=str(cpu), memory=str(memory))
        for setting, name in (("execution_role_arn", "executionRoleArn"),
                              ("task_role_arn", "taskRoleArn")):
            if self.settings.get(setting):
                args[name] = self.settings[setting]
        return args

    def _compatibilities(self) -> list[str]:
        if self.launch_type:
            return [self.launch_type]
        return ["FARGATE"] if self.fargate else ["EC2"]

    def _find_definition(self, family: str, fingerprint: str) -> str | None:
        """The newest ACTIVE revision of ``family`` tagged with ``fingerprint``, if any."""
        checked = set()
        try:
            latest = self.call(self.ecs, "describe_task_definition", taskDefinition=family,
                               include=["TAGS"])
        except AwsError as exc:
            if exc.code not in ("ClientException", "InvalidParameterException"):
                raise
            return None  # the family does not exist yet
        arn = latest["taskDefinition"]["taskDefinitionArn"]
        if _tag(latest.get("tags"), "orch:fingerprint") == fingerprint:
            return arn
        checked.add(arn)
        arns = self.call(self.ecs, "list_task_definitions", familyPrefix=family,
                         status="ACTIVE", sort="DESC", maxResults=TD_REVISIONS_CHECKED + 1)
        newest = sorted(arns["taskDefinitionArns"], key=_revision, reverse=True)
        for arn in [a for a in newest if a not in checked][:TD_REVISIONS_CHECKED]:
            found = self.call(self.ecs, "describe_task_definition", taskDefinition=arn,
                              include=["TAGS"])
            if _tag(found.get("tags"), "orch:fingerprint") == fingerprint:
                return arn
        return None

    def _ensure_log_group(self) -> None:
        if not self.settings.get("create_log_group", True):
            return
        try:
            self.call(self.logs, "create_log_group", logGroupName=self.log_group)
        except AwsError as exc:
            if exc.code == "ResourceAlreadyExistsException":
                return
            if exc.code != "AccessDeniedException":
                raise
            log.warning("cannot create log group %s (%s); it must exist", self.log_group, exc)

    # --- poll -------------------------------------------------------------------------------

    def statuses(self, items: list[PollItem]) -> dict[str, Status]:
        by_handle = {item.handle: item for item in items}
        arns = [h for h in by_handle if TASK_ARN.match(h)]
        answers: dict[str, Status] = {
            h: Status(missing=True, message=f"not an ECS task ARN: {h!r}")
            for h in by_handle if not TASK_ARN.match(h)
        }
        tasks: dict[str, dict[str, Any]] = {}
        for cluster, batch in self._batches(arns):
            answer = self.call(self.ecs_polling, "describe_tasks", cluster=cluster,
                               tasks=batch)
            for task in answer.get("tasks") or []:
                tasks[task["taskArn"]] = task
            for failure in answer.get("failures") or []:
                why = " ".join(filter(None, (failure.get("reason"), failure.get("detail"))))
                answers[failure.get("arn", "")] = Status(
                    missing=True, message=f"ECS does not know task {failure.get('arn')} ({why})",
                )
        self._draining, self._stopping = set(), set()
        running = []
        for handle in arns:
            task = tasks.get(handle) or _match_by_id(tasks, handle)
            if task is None:
                answers.setdefault(handle, Status(missing=True, message=f"ECS has no {handle}"))
                continue
            answers[handle] = status = self._status(task)
            if task.get("desiredStatus") == "STOPPED":
                self._stopping.add(handle)
            if task.get("lastStatus") == "STOPPED":
                self._draining.add(handle)
                continue
            if status.state == State.RUNNING:
                running.append(handle)
            item = by_handle[handle]
            if handle not in self._stopping and time_limit_passed(item):
                try:
                    self._stop(handle, f"{TIME_LIMIT_REASON} of {item.time_limit_s} s exceeded")
                except ExecutorError as exc:  # asked again on the next poll
                    log.warning("stop of %s past its time limit failed: %s", handle, exc)
        self._log_due = self._draining | self._log_turn(running)
        return answers

    def _batches(self, arns: list[str]) -> list[tuple[str, list[str]]]:
        """``arns`` by cluster (the one in a long-format ARN, else the pool's), 100 a batch."""
        by_cluster: dict[str, list[str]] = {}
        for arn in arns:
            by_cluster.setdefault(self._cluster_of(arn), []).append(arn)
        return [(cluster, handles[at:at + DESCRIBE_BATCH])
                for cluster, handles in by_cluster.items()
                for at in range(0, len(handles), DESCRIBE_BATCH)]

    def _cluster_of(self, handle: str) -> str:
        parts = handle.split(":", 5)[-1].split("/")
        return parts[1] if len(parts) == 3 and parts[0] == "task" else self.cluster

    def _status(self, task: dict[str, Any]) -> Status:
        last = task.get("lastStatus", "")
        started = State.RUNNING if task.get("startedAt") else State.SUBMITTED
        if last != "STOPPED":
            state = LAST_STATUS.get(last, started)
            return Status(state or started, message=f"ECS: {last.lower()}")
        stopped_at = task.get("stoppedAt")
        since = time.time() - stopped_at.timestamp() if isinstance(stopped_at, datetime) else None
        # awslogs delivers the last lines a moment after the task stops: wait for them.
        if since is not None and since < self.log_settle_s:
            return Status(started, message="ECS: stopped; waiting for its last log lines")
        return _ended(task, self.container_name)

    def _log_turn(self, running: list[str]) -> set[str]:
        """Running tasks whose logs this poll reads: all of them, or a turn of
        ``log_reads_per_poll`` so the pool stays within CloudWatch's GetLogEvents rate."""
        if self.log_budget is None or len(running) <= self.log_budget:
            return set(running)
        if self.log_budget <= 0:
            return set()
        with _LOCK:
            turn = next(_POLL_TURNS.setdefault(self.pool, itertools.count()))
        groups = -(-len(running) // self.log_budget)
        at = (turn % groups) * self.log_budget
        return set(sorted(running)[at:at + self.log_budget])

    def cancel(self, handle: str) -> None:
        if handle in self._stopping:  # ECS is already stopping it: asking again changes nothing
            return
        self._stop(handle, STOP_REASON)

    def _stop(self, handle: str, reason: str) -> None:
        try:
            self.call(self.ecs, "stop_task", cluster=self._cluster_of(handle), task=handle,
                      reason=reason)
        except AwsError as exc:
            if exc.code == "InvalidParameterException" and "not found" in str(exc).lower():
                return  # an unknown task: nothing to stop
            raise
        self._stopping.add(handle)

    def read_log(self, item: PollItem, limit: int) -> LogChunk:
        """Bytes of the task's stream from ``item.log_offset``, which the control plane holds
        and which stays the truth: the cursor only says where a page of CloudWatch's starts
        (its forward token and the byte offset of its first event), so a chunk may end in the
        middle of a line or character and the next read resumes exactly where it stopped."""
        if self._log_due is not None and item.handle not in self._log_due:
            return LogChunk()
        stream = f"{self.log_prefix}/{self.container_name}/{item.handle.rsplit('/', 1)[-1]}"
        token, page_at = _parse_cursor(item.log_cursor)
        if item.log_offset < page_at:  # the control plane holds less than the cursor says
            token, page_at = None, 0
        data = bytearray()
        for _ in range(LOG_PAGES_AT_END if item.handle in self._draining else 1):
            kwargs: dict[str, Any] = dict(logGroupName=self.log_group, logStreamName=stream,
                                          startFromHead=True)
            if token:
                kwargs["nextToken"] = token
            try:
                page = self.call(self.logs_polling, "get_log_events", **kwargs)
            except AwsError as exc:
                if exc.code == "ResourceNotFoundException":  # no output written yet
                    break
                raise
            blob = b"".join((e.get("message", "") + "\n").encode() for e in page.get("events", []))
            held = item.log_offset + len(data) - page_at
            data += blob[held:held + limit - len(data)]
            if len(data) >= limit:  # the rest of this page comes on the next poll
                break
            following = page.get("nextForwardToken")
            if not following or following == token:  # CloudWatch's answer at the stream's end
                break
            token, page_at = following, page_at + len(blob)
        return LogChunk(bytes(data), _cursor(token, page_at))


# --- what a stopped task's answer means --------------------------------------------------------


def _ended(task: dict[str, Any], container_name: str) -> Status:
    code = task.get("stopCode", "")
    reason = task.get("stoppedReason") or ""
    container = _essential(task, container_name)
    exit_code = container.get("exitCode")
    detail = "; ".join(x for x in (reason, container.get("reason") or "") if x)
    if code == "UserInitiated" and reason.startswith(TIME_LIMIT_REASON):
        return Status(State.FAILED, exit_code, reason.removeprefix("orchestration: "))
    rule = STOP_CODES.get(code)
    if rule is not None:
        state, what = rule
        return Status(state, exit_code, f"{what}: {detail}" if detail else what)
    if exit_code == 0:  # EssentialContainerExited, or a stopCode ECS added since
        return Status(State.SUCCEEDED, 0)
    if exit_code is None:
        return Status(State.FAILED, None, f"the task stopped without an exit code: {detail}")
    why = f": {container['reason']}" if container.get("reason") else ""
    return Status(State.FAILED, exit_code, f"exited with code {exit_code}{why}")


def _essential(task: dict[str, Any], name: str) -> dict[str, Any]:
    containers = task.get("containers") or [{}]
    return next((c for c in containers if c.get("name") == name), containers[0])


def _match_by_id(tasks: dict[str, dict[str, Any]], handle: str) -> dict[str, Any] | None:
    task_id = handle.rsplit("/", 1)[-1]
    return next((t for arn, t in tasks.items() if arn.rsplit("/", 1)[-1] == task_id), None)


# --- names, sizes and tokens --------------------------------------------------------------------


def client_token(process_id: str) -> str:
    """run_task's idempotency token (up to 64 characters): the job name, or its hash."""
    name = job_name(process_id)
    if len(name) <= 64 and all(33 <= ord(c) <= 126 for c in name):
        return name
    return "orch-" + hashlib.sha256(process_id.encode()).hexdigest()[:59]


def task_family(prefix: str, pipeline: str) -> str:
    """A task definition family from the pipeline name: letters, digits, - and _ only."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{prefix}{pipeline}")[:255]


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


def _started_by(process_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", job_name(process_id))[:128]


def _tag_value(value: str) -> str:
    return re.sub(r"[^\w .:/=+\-@]", "-", value)[:256]


def _command(spec: JobSpec) -> list[str]:
    if spec.command:
        return list(spec.command)
    if spec.script:  # the pipeline author's script; the user's config stays in ORCH_CONFIG
        return ["/bin/sh", "-c", spec.script]
    raise ExecutorError("the pipeline names no command or script", permanent=True)


def _cpu_units(spec: JobSpec) -> int:
    return max(128, int(round(spec.resources.cpus * 1024)))


def _strategy_item(item: dict[str, Any]) -> dict[str, Any]:
    provider = item.get("capacity_provider") or item.get("capacityProvider")
    if not provider:
        raise ExecutorError(f"capacity_provider_strategy item without a provider: {item}",
                            permanent=True)
    out: dict[str, Any] = {"capacityProvider": provider, "weight": int(item.get("weight", 1))}
    if item.get("base") is not None:
        out["base"] = int(item["base"])
    return out


def _tag(tags: list[dict[str, str]] | None, key: str) -> str | None:
    return next((t.get("value") for t in tags or [] if t.get("key") == key), None)


def _revision(arn: str) -> int:
    try:
        return int(arn.rsplit(":", 1)[-1])
    except ValueError:
        return 0


def _cursor(token: str | None, page_at: int) -> str:
    """The log cursor: CloudWatch's forward token and the byte offset in the job's output of
    the first event it returns (``@0`` alone: the stream's head)."""
    return f"{token or ''}@{page_at}"


def _parse_cursor(cursor: str | None) -> tuple[str | None, int]:
    token, marker, page_at = (cursor or "").rpartition("@")
    if marker and page_at.isdigit():
        return token or None, int(page_at)
    return None, 0
