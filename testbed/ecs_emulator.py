"""moto's ECS and CloudWatch Logs in server mode, plus the part ECS itself plays.

No AWS is reachable from the machines these tests run on, so the ECS target is tested against
moto (https://docs.getmoto.org) running as a real HTTP server in the test process
(``ThreadedMotoServer``): the executor talks to it with boto3 over HTTP exactly as it talks to
AWS, retries and all. What moto 5.2.5 does well by itself: clusters, task definitions (with
tags), ``run_task`` with overrides, ``startedBy`` and tags, ``list_tasks``, ``describe_tasks``,
CloudWatch log groups, streams and ``get_log_events`` with forward tokens.

What moto does not do, and this module does in its place, each marked ``ECS:`` below. It runs
in process, on moto's own models, because moto offers no API for it:

- ECS: a task moves PROVISIONING -> PENDING -> RUNNING -> STOPPED as its container starts and
  exits. moto starts tasks RUNNING and advances them on every ``describe_tasks`` call whatever
  happens (RUNNING ... STOPPED by the fourth), never sets ``stopCode``, timestamps or exit
  codes (containers stay PENDING with exit code 0). Here moto's own progression is switched off
  through ``/moto-api/state-manager/set-transition`` and each ``describe_tasks`` moves a task
  one step through the life a test gave its container (:class:`Container`): the lines it
  prints, its exit code, ECS's ``stopCode``, ``stoppedReason``, ``startedAt``/``stoppedAt``.
  A task nobody scripted runs until it is stopped.
- ECS: a task whose image the registry does not have (``known_images``) or whose log group does
  not exist stops with ``stopCode`` TaskFailedToStart (``CannotPullContainerError``,
  ``ResourceInitializationError``).
- ECS's awslogs driver: what the container prints reaches CloudWatch Logs in the stream
  ``<awslogs-stream-prefix>/<container name>/<task id>`` of the task definition's log group.
  Lines may arrive after the task stopped (``Container.late_output``).
- ECS: ``stop_task`` sets desiredStatus STOPPED, stopCode UserInitiated and the reason at once;
  the task reaches STOPPED (container exit code 143, SIGTERM) on the next describe. A stopped
  task stays as it was when stopped again; an unknown one gets InvalidParameterException
  "The referenced task was not found." (moto answers HTTP 500 to that).
- ECS: ``run_task`` with a ``clientToken`` it has seen returns the task it started for it
  instead of starting another (moto ignores the token). When Fargate has no capacity
  (``capacity_available = False``) it answers a failure and starts nothing.
- ECS: ``describe_tasks`` lists an ARN it does not know under ``failures`` with reason MISSING
  (moto leaves it out).
- Faults a test asks for: ``throttle(action, n)`` answers the next n calls with
  ThrottlingException, as AWS does above its rate; ``lose_answer(action, n)`` carries out the
  next n calls and then answers 503, as when a response is lost on the way back.
- ``calls`` counts the requests the server received per (service, action), retries included.

``POST /moto-api/reset`` does not clear transitions: :meth:`EcsEmulator.stop` unsets the one it
set. Everything lives in the test process and ends with it; nothing is left behind.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
import requests

try:
    from moto.core.exceptions import ServiceException
    from moto.core.responses import ActionResult
    from moto.ecs.models import ecs_backends
    from moto.ecs.responses import EC2ContainerServiceResponse
    from moto.logs.models import logs_backends
    from moto.logs.responses import LogsResponse
    from moto.server import ThreadedMotoServer
    from werkzeug.exceptions import ServiceUnavailable
except ImportError as exc:  # a skip with the reason (a failure in CI: tests/conftest.py)
    pytest.skip(f"the ECS tests need moto's server mode: pip install 'moto[server]>=5.2.5' "
                f"({exc})", allow_module_level=True)

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "eu-west-1"
BUSYBOX = "orchestration/busybox:latest"
CAPACITY_UNAVAILABLE = (
    "Capacity is unavailable at this time. Please try again later or in a different "
    "availability zone"
)
# Credentials for the standard boto3 chain (the environment): moto accepts any.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing", "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}
ECS_ACTIONS = ("run_task", "describe_tasks", "stop_task", "list_tasks",
               "register_task_definition", "describe_task_definition", "list_task_definitions")
LOGS_ACTIONS = ("get_log_events", "create_log_group")


@dataclass
class Container:
    """What a job's container does, as ECS and its awslogs driver would report it."""

    output: list[str] = field(default_factory=list)  # lines it prints once RUNNING
    exit_code: int | None = 0  # None: it runs until it is stopped
    reason: str = ""  # ECS's container reason, e.g. "OutOfMemoryError: ..."
    late_output: list[str] = field(default_factory=list)  # reach CloudWatch after STOPPED


class Throttled(ServiceException):
    code = "ThrottlingException"
    message = "Rate exceeded"


class TaskNotFound(ServiceException):
    code = "InvalidParameterException"
    message = "The referenced task was not found."


class EcsEmulator:
    def __init__(self, region: str = REGION):
        self.region = region
        self.url = ""
        self.known_images = {BUSYBOX}
        self.capacity_available = True
        self.calls: Counter[tuple[str, str]] = Counter()
        self._containers: dict[str, Container] = {}
        self._faults: dict[str, list[str]] = {}
        self._tokens: dict[str, list[str]] = {}
        self._late_delivered: set[str] = set()
        self._lock = threading.RLock()
        self._patched: list[tuple[type, str, Any]] = []
        self._server: ThreadedMotoServer | None = None

    # --- life of the server ---------------------------------------------------------------------

    def start(self) -> EcsEmulator:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self._patch()
        # moto's own task progression off: tasks move only as this module moves them.
        self._moto_api("state-manager/set-transition", {
            "model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9},
        })
        return self

    def stop(self) -> None:
        try:
            self._moto_api("state-manager/unset-transition", {"model_name": "ecs::task"})
            self._moto_api("reset", None)
        finally:
            for cls, name, original in reversed(self._patched):
                setattr(cls, name, original)
            self._patched.clear()
            if self._server is not None:
                self._server.stop()

    def _moto_api(self, path: str, body: dict | None) -> None:
        answer = requests.post(f"{self.url}/moto-api/{path}", json=body, timeout=10)
        answer.raise_for_status()

    def client(self, service: str):
        return boto3.session.Session().client(
            service, region_name=self.region, endpoint_url=self.url,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    # --- what an AWS account would already have -----------------------------------------------

    def create_network(self) -> tuple[list[str], list[str]]:
        """A VPC with one subnet and one security group: (subnet ids, security group ids)."""
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/16")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="orch-tasks", Description="tasks", VpcId=vpc)
        return [subnet], [group["GroupId"]]

    def create_cluster(self, name: str) -> str:
        ecs = self.client("ecs")
        return ecs.create_cluster(
            clusterName=name, capacityProviders=["FARGATE", "FARGATE_SPOT"],
        )["cluster"]["clusterArn"]

    def add_container_instance(self, cluster: str) -> None:
        """An EC2 instance registered to ``cluster`` (moto gives it 4096 cpu, 7482 MiB)."""
        ec2 = self.client("ec2")
        instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
        document = {"instanceId": instance["Instances"][0]["InstanceId"]}
        self.client("ecs").register_container_instance(
            cluster=cluster, instanceIdentityDocument=json.dumps(document),
        )

    # --- what a test says will happen ------------------------------------------------------------

    def script(self, process_id: str, container: Container) -> None:
        """The container of ``process_id``'s task will do what ``container`` says."""
        with self._lock:
            self._containers[process_id] = container

    def throttle(self, action: str, times: int) -> None:
        with self._lock:
            self._faults.setdefault(action, []).extend(["throttle"] * times)

    def lose_answer(self, action: str, times: int = 1) -> None:
        with self._lock:
            self._faults.setdefault(action, []).extend(["lose"] * times)

    def interrupt_spot(self, task_arn: str) -> None:
        """ECS: Fargate Spot takes the capacity back (two minutes' notice, then SIGTERM)."""
        with self._lock:
            task = self._find(task_arn)
            task.desired_status = "STOPPED"
            task.stop_code = "SpotInterruption"
            task.stopped_reason = "Your Spot Task was interrupted."

    def forget(self, task_arn: str) -> None:
        """ECS: a stopped task leaves ``describe_tasks`` (about an hour after it stopped)."""
        with self._lock:
            for tasks in self._backend().tasks.values():
                tasks.pop(task_arn, None)

    def clear(self) -> None:
        """Back to a healthy account: no pending faults, capacity available, calls zeroed."""
        with self._lock:
            self._faults.clear()
            self.capacity_available = True
            self.calls.clear()

    # --- moto's models ---------------------------------------------------------------------------

    def _backend(self):
        return ecs_backends[ACCOUNT_ID][self.region]

    def _logs(self):
        return logs_backends[ACCOUNT_ID][self.region]

    def _find(self, ref: str):
        task_id = ref.rsplit("/", 1)[-1]
        for tasks in self._backend().tasks.values():
            for arn, task in tasks.items():
                if arn == ref or arn.rsplit("/", 1)[-1] == task_id:
                    return task
        return None

    def _definition(self, task) -> dict[str, Any]:
        definition = self._backend().describe_task_definition(task.task_definition_arn)
        return definition.container_definitions[0]

    # --- the server's answers: counted, faulted, and ECS's behaviour where moto lacks it ---------

    def _patch(self) -> None:
        behaviours = {"run_task": self._run_task, "describe_tasks": self._describe_tasks,
                      "stop_task": self._stop_task}
        for name in ECS_ACTIONS:
            self._wrap(EC2ContainerServiceResponse, "ecs", name, behaviours.get(name))
        for name in LOGS_ACTIONS:
            self._wrap(LogsResponse, "logs", name, None)

    def _wrap(self, cls: type, service: str, name: str, behaviour) -> None:
        original = getattr(cls, name)
        emulator = self

        def answer(response):
            action = response._get_action()
            with emulator._lock:
                emulator.calls[(service, action)] += 1
                pending = emulator._faults.get(action) or []
                fault = pending.pop(0) if pending else None
            if fault == "throttle":
                raise Throttled()
            result = behaviour(response, original) if behaviour else original(response)
            if fault == "lose":
                raise ServiceUnavailable("the answer was lost on its way back")
            return result

        answer.__name__ = name
        setattr(cls, name, answer)
        self._patched.append((cls, name, original))

    def _run_task(self, response, original) -> ActionResult:
        token = response._get_param("clientToken")
        with self._lock:
            if not self.capacity_available:  # ECS: Fargate answers a failure, starts nothing
                cluster = response._get_param("cluster", "default")
                return ActionResult({"tasks": [], "failures": [
                    {"arn": cluster, "reason": CAPACITY_UNAVAILABLE}]})
            if token and token in self._tokens:  # ECS: the same token gives the same task
                tasks = [t for t in map(self._find, self._tokens[token]) if t is not None]
                return ActionResult({"tasks": tasks, "failures": []})
            result = original(response)
            tasks = result.result["tasks"]
            for task in tasks:  # ECS: a task starts PROVISIONING, its container has no exit code
                task.last_status = "PROVISIONING"
                task.created_at = _now()
                for container in task.containers:
                    container.exitCode = None
            if token:
                self._tokens[token] = [t.task_arn for t in tasks]
            return result

    def _describe_tasks(self, response, original) -> ActionResult:
        wanted = response._get_param("tasks") or []
        with self._lock:
            result = original(response)
            tasks = result.result["tasks"]
            for task in tasks:
                self._step(task)
            known = {t.task_arn.rsplit("/", 1)[-1] for t in tasks}
            result.result["failures"] = [  # ECS: unknown ARNs come back as MISSING
                {"arn": ref, "reason": "MISSING"} for ref in wanted
                if ref.rsplit("/", 1)[-1] not in known
            ]
            return result

    def _stop_task(self, response, original) -> ActionResult:
        reason = response._get_param("reason") or "Task stopped by user"
        with self._lock:
            task = self._find(response._get_param("task") or "")
            if task is None:
                raise TaskNotFound()
            if task.last_status != "STOPPED" and task.desired_status != "STOPPED":
                task.desired_status = "STOPPED"
                task.stop_code = "UserInitiated"
                task.stopped_reason = reason
                task.stopping_at = _now()
            return ActionResult({"task": task})

    # --- ECS's task lifecycle, one step per describe --------------------------------------------

    def _step(self, task) -> None:
        container = self._container_of(task)
        status = task.last_status
        if status == "STOPPED":
            if container and container.late_output and task.task_arn not in self._late_delivered:
                self._late_delivered.add(task.task_arn)
                self._write_logs(task, container.late_output)
        elif task.desired_status == "STOPPED":  # stop_task or Spot interruption in progress
            self._finish(task, 143 if getattr(task, "started_at", None) else None)
        elif status == "PROVISIONING":
            task.last_status = "PENDING"
        elif status == "PENDING":
            self._start(task, container)
        elif status == "RUNNING" and container and container.exit_code is not None:
            task.stop_code = "EssentialContainerExited"
            task.stopped_reason = "Essential container in task exited"
            self._finish(task, container.exit_code, container.reason)

    def _start(self, task, container: Container | None) -> None:
        definition = self._definition(task)
        image = definition.get("image")
        group = _log_options(definition).get("awslogs-group")
        if image not in self.known_images:
            self._fail_to_start(task, "CannotPullContainerError: pull image manifest has been "
                                      f"retried 5 time(s): failed to resolve ref {image}")
        elif group and group not in self._logs().groups:
            self._fail_to_start(task, "ResourceInitializationError: failed to validate logger "
                                      "args: The specified log group does not exist.")
        else:
            task.last_status = "RUNNING"
            task.pull_started_at = task.pull_stopped_at = task.started_at = _now()
            for each in task.containers:
                each.last_status = "RUNNING"
            if group:
                self._write_logs(task, container.output if container else [])

    def _fail_to_start(self, task, reason: str) -> None:
        task.stop_code = "TaskFailedToStart"
        task.stopped_reason = reason
        for each in task.containers:
            each.reason = reason
        self._finish(task, None)

    def _finish(self, task, exit_code: int | None, reason: str = "") -> None:
        for each in task.containers:
            each.last_status = "STOPPED"
            each.exitCode = exit_code
            if reason:
                each.reason = reason
        task.desired_status = "STOPPED"
        task.last_status = "STOPPED"
        task.execution_stopped_at = task.stopped_at = _now()

    def _container_of(self, task) -> Container | None:
        process_id = next((t["value"] for t in task.tags or []
                           if t.get("key") == "orch:process-id"), None)
        return self._containers.get(process_id) if process_id else None

    def _write_logs(self, task, lines: list[str]) -> None:
        """ECS's awslogs driver: the container's lines in its stream of the log group."""
        definition = self._definition(task)
        options = _log_options(definition)
        stream = "/".join((options.get("awslogs-stream-prefix", "ecs"), definition["name"],
                           task.task_arn.rsplit("/", 1)[-1]))
        group = options["awslogs-group"]
        self._logs().ensure_log_stream(group, stream)
        if lines:
            millis = int(_now().timestamp() * 1000)
            self._logs().put_log_events(group, stream, [
                {"timestamp": millis, "message": line} for line in lines])


def _log_options(definition: dict[str, Any]) -> dict[str, str]:
    return (definition.get("logConfiguration") or {}).get("options") or {}


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def serving(cluster: str) -> Iterator[EcsEmulator]:
    """The emulator, started with one cluster and a network, under fake credentials that hide
    any real AWS profile; stopped afterwards."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in FAKE_CREDENTIALS.items():
            env.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN"):
            env.delenv(key, raising=False)
        emulator = EcsEmulator().start()
        try:
            emulator.network = emulator.create_network()
            emulator.create_cluster(cluster)
            yield emulator
        finally:
            emulator.stop()
