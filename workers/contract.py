"""The contract between the control plane and the worker pools.

Both sides import this module and nothing else of each other: it names the targets (and
what a job may ask of each), the queues, the task names, the states and the three kinds of
message that cross the broker. How both sides connect to the broker: ``workers.broker_settings``.

- A **job spec** goes from the control plane to ``pool.<name>``: everything a worker needs to
  start one run, self-contained (a worker has no database).
- A **poll request** goes to ``pool.<name>`` (targets with one front door: Slurm, ECS) or to
  ``pool.<name>.<host>`` (targets whose jobs live on one host: local, Docker). It lists the
  handles of the pool's non-terminal processes, the log offset the control plane already holds
  and whether a stop was asked for.
- **Events** go from workers to ``control``: what a worker saw (a state, a handle, an exit code,
  new log bytes). The control plane applies them; a duplicate or late event changes nothing.

Messages are plain dicts of JSON types so they survive any serializer and any language. Job
specs, polls and cancels travel inside a signed envelope (``workers.signing``): a worker acts
only on what the control plane signed.
"""

from __future__ import annotations

import enum
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

# --- targets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetFacts:
    """One kind of target: where its executor is and what a job on it may ask for."""

    name: str
    # Its executor's class, under ``workers.executors`` (imported lazily, by that package).
    executor: str
    # Its handles live on one host: polls, cancels and log reads must reach that host.
    host_bound: bool = False
    # True: a job runs in the image ``run.image`` names, and needs one. False: a job runs on
    # the target's own hosts, and an image is refused.
    runs_image: bool = False
    # A job needs ``run.command`` or ``run.script`` (False: the image's own command may run).
    needs_command: bool = True
    # The executor opens the job's secrets itself in ``start``, to keep the values out of what
    # the target saves with the job (Slurm stores a job's environment); otherwise the worker
    # opens them into ``spec.env`` before ``submit``.
    opens_secrets: bool = False
    # How a refusal names it ("the <name> target" when empty), and the targets it suggests
    # for a job that asks it for an image.
    called: str = ""
    images_instead: tuple[str, ...] = ()
    # Handles per poll message at most: a target whose one status call answers for any number
    # of jobs (one squeue) takes a whole pool in one message, so one call per cycle.
    poll_batch_max: int = 1000
    # A Slurm cluster behind it: jobs take sbatch options, and its workers report the
    # cluster's reachability (and REST version) with each heartbeat.
    cluster: bool = False


# Every target kind, named once: pipelines name one, pools serve one, each has an executor, and
# everything else that lists targets (the models' choices, the executors' registry) derives
# from this table. Adding a target: its executor module, and one entry here.
TARGET_TABLE = (
    TargetFacts("local", "local.LocalExecutor", host_bound=True, images_instead=("docker",)),
    TargetFacts("docker", "docker.DockerExecutor", host_bound=True, runs_image=True,
                needs_command=False),
    TargetFacts("slurm", "slurm.cli.SlurmExecutor", opens_secrets=True,
                called="the Slurm targets", images_instead=("docker", "ecs"),
                poll_batch_max=10_000, cluster=True),
    TargetFacts("slurm_rest", "slurm.rest.SlurmRestExecutor", opens_secrets=True,
                called="the Slurm targets", images_instead=("docker", "ecs"),
                poll_batch_max=10_000, cluster=True),
    TargetFacts("ecs", "ecs.EcsExecutor", runs_image=True),
)
TARGET_FACTS = {target.name: target for target in TARGET_TABLE}
TARGETS = tuple(TARGET_FACTS)
HOST_BOUND_TARGETS = frozenset(t.name for t in TARGET_TABLE if t.host_bound)
CLUSTER_TARGETS = tuple(t.name for t in TARGET_TABLE if t.cluster)  # Slurm's: sbatch options


def job_refusals(target: str, *, image: str | None, script: str | None,
                 command: list[str] | None) -> list[str]:
    """What a job asks of ``target`` that the target cannot do, one message each ([] when it
    can run the job). Checked when a pipeline file loads, and again by every executor before
    it starts a job (a job spec from an older control plane)."""
    facts = TARGET_FACTS.get(target)
    if facts is None:
        return [f"unknown target {target!r}; known: {', '.join(TARGETS)}"]
    refusals = []
    if image and not facts.runs_image:
        refusals.append(f"{facts.called or f'the {target} target'} cannot run image {image!r}; "
                        f"use target {' or '.join(facts.images_instead)}")
    if facts.runs_image and not image:
        refusals.append(f"the {target} target needs run.image in the pipeline")
    if facts.needs_command and not (command or script):
        refusals.append("the pipeline names no command or script")
    return refusals


# --- queues -------------------------------------------------------------------------------------

CONTROL_QUEUE = "control"


def pool_queue(pool: str) -> str:
    """The queue that any worker of ``pool`` consumes: job specs (and polls for shared targets)."""
    return f"pool.{pool}"


def host_queue(pool: str, host: str) -> str:
    """The queue that only the worker of ``pool`` on ``host`` consumes."""
    return f"pool.{pool}.{host}"


def queue_for_handle(pool: str, target: str, host: str | None) -> str:
    """Where polls and cancels for a handle go: its host's queue when the target is host-bound."""
    if target in HOST_BOUND_TARGETS and host:
        return host_queue(pool, host)
    return pool_queue(pool)


HOST_ENV = "ORCH_WORKER_HOST"
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def this_host() -> str:
    """The host name a worker reports and the suffix of its host queue: ``ORCH_WORKER_HOST``
    when set (a name other than the machine's, or two workers of one machine standing for
    two hosts), else the machine's short name."""
    host = os.environ.get(HOST_ENV)
    if not host:
        return socket.gethostname().split(".")[0]
    if not _HOST_RE.match(host):  # it names a queue and ends a worker identity NAME@HOST
        raise ValueError(f"{HOST_ENV}: {host!r} is not a host name (letters, digits, - and _)")
    return host


# --- task names (the wire names; each side registers its own function under them) --------------

TASK_SUBMIT = "orchestration.worker.submit"
TASK_POLL = "orchestration.worker.poll"
TASK_CANCEL = "orchestration.worker.cancel"
TASK_APPLY_EVENTS = "orchestration.control.apply_events"
TASK_HEARTBEAT = "orchestration.control.heartbeat"
# The control plane's own tasks, sent and consumed by it alone through ``control``.
TASK_POLL_POOLS = "orchestration.control.poll_pools"
TASK_CONSUMER_HEARTBEAT = "orchestration.control.consumer_heartbeat"
TASK_HOUSEKEEPING = "orchestration.control.housekeeping"


# --- states ---------------------------------------------------------------------------------------


class State(enum.StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    LOST = "LOST"


TERMINAL_STATES = frozenset({State.SUCCEEDED, State.FAILED, State.STOPPED, State.LOST})
ACTIVE_STATES = frozenset(set(State) - TERMINAL_STATES)
# States in which a handle on the target exists (or may) and the poll loop asks about it.
POLLED_STATES = frozenset({State.SUBMITTED, State.RUNNING, State.STOPPING})

# The state machine: a process only moves to a state of a higher rank. Every terminal state
# shares the top rank, so nothing leaves a terminal state and two terminal states never swap.
_RANK = {
    State.PENDING: 0,
    State.QUEUED: 1,
    State.SUBMITTED: 2,
    State.RUNNING: 3,
    State.STOPPING: 4,
    **{s: 5 for s in TERMINAL_STATES},
}


def can_move(current: State | str, target: State | str) -> bool:
    """True when ``current -> target`` moves forward. The only place transitions are decided."""
    return _RANK[State(target)] > _RANK[State(current)]


def is_terminal(state: State | str) -> bool:
    return State(state) in TERMINAL_STATES


# --- messages -------------------------------------------------------------------------------------


@dataclass
class Resources:
    cpus: float = 1
    memory_mb: int = 512
    gpus: int = 0
    time_limit_s: int = 3600


@dataclass
class JobSpec:
    """One run, as a worker receives it. ``config`` is data: executors write it to a file in
    the job's work dir and pass its path (``ORCH_CONFIG_FILE``); it never becomes code."""

    process_id: str
    pipeline: str
    version: int
    target: str
    pool: str
    command: list[str] = field(default_factory=list)
    image: str = ""
    script: str = ""
    env: dict[str, str] = field(default_factory=dict)
    # "root" when the pipeline asks for it (its pool must allow it), else the pool's user.
    user: str = ""
    # Secret env values, sealed (workers.secrets); opened by the worker only to start the job.
    secret_env: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    # The GPU devices admission gave the job on a pool that counts them (ids as nvidia-smi
    # shows them); the executor gives it exactly these. Empty: the pool does not count GPUs.
    gpu_devices: list[str] = field(default_factory=list)
    pool_settings: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    # Which attempt of the process this job is (1 for the first; a retry is a new attempt with
    # a job of its own name, so find-before-start still gives one job per attempt).
    attempt: int = 1
    # Datasets the job reads, one ``StagedInput`` dict each: the worker stages each read-only
    # under the job's inputs dir and writes that path into the config at ``pointer``.
    inputs: list[dict[str, Any]] = field(default_factory=list)
    # Where the job's outputs go (``OutputsSpec`` as a dict; empty: the job keeps none).
    outputs: dict[str, Any] = field(default_factory=dict)
    # sbatch options of a Slurm job (``workers.sbatch_options``): the pool's
    # defaults, the pipeline's and the run's, merged; checked again by the worker.
    sbatch: dict[str, Any] = field(default_factory=dict)

    @property
    def job_name(self) -> str:
        """The name every target knows this run by; submission looks it up before starting."""
        return job_name(self.process_id, self.attempt)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        data = dict(data)
        data["resources"] = Resources(**data.get("resources") or {})
        return cls(**data)


def job_name(process_id: str, attempt: int = 1) -> str:
    """``orch-<id>`` for a process's first attempt, ``orch-<id>-a<N>`` for attempt N."""
    return f"orch-{process_id}" if attempt <= 1 else f"orch-{process_id}-a{attempt}"


@dataclass
class PollItem:
    """One handle the control plane asks about."""

    process_id: str
    handle: str
    log_offset: int = 0
    log_cursor: str | None = None
    stop_requested: bool = False
    submitted_at: float | None = None
    time_limit_s: int | None = None
    attempt: int = 1


# Handles per poll message at most (a target's ``poll_batch_max`` when it says). A request with
# fewer lists every handle of its pool (and host): only then may a worker treat what is not
# listed as orphaned.
POLL_BATCH_MAX = 1000


def poll_batch_max(target: str) -> int:
    facts = TARGET_FACTS.get(target)
    return facts.poll_batch_max if facts is not None else POLL_BATCH_MAX


@dataclass
class PollRequest:
    pool: str
    target: str
    host: str | None
    items: list[PollItem]
    pool_settings: dict[str, Any] = field(default_factory=dict)
    sent_at: float = field(default_factory=time.time)

    @property
    def complete(self) -> bool:
        """True when this request lists every live handle of its pool (and host)."""
        return len(self.items) < poll_batch_max(self.target)

    def to_dict(self) -> dict[str, Any]:
        # Not asdict(): its deep copy of every item was most of a 10,000-handle poll cycle.
        return {**vars(self), "items": [dict(vars(item)) for item in self.items],
                "pool_settings": dict(self.pool_settings)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PollRequest:
        data = dict(data)
        data["items"] = [PollItem(**item) for item in data["items"]]
        return cls(**data)


@dataclass
class Event:
    """What a worker saw of one process. Every field but ``process_id`` is optional.

    ``state`` is the state the target reports (never STOPPING: only a user asks for that).
    ``log_offset`` is the byte offset of ``log`` in the job's whole output and ``log_end`` the
    offset after it, so the control plane appends only bytes it does not have yet; ``log`` is
    text decoded from whole UTF-8 characters. ``log_cursor`` is the target's own resume token
    (CloudWatch's forward token), opaque to the control plane, handed back in the next poll.
    ``missing`` says the target does not know the handle (reconciliation decides).
    """

    process_id: str
    source: str
    state: str | None = None
    handle: str | None = None
    host: str | None = None
    exit_code: int | None = None
    message: str = ""
    log: str = ""
    log_offset: int | None = None
    log_end: int | None = None
    log_cursor: str | None = None
    missing: bool = False
    at: float = field(default_factory=time.time)
    # Which attempt the event is about: an event of an earlier attempt changes nothing.
    attempt: int | None = None
    # Why the target ended the job, when it says: one of END_REASONS.
    reason: str = ""
    # With a terminal state: the job's outputs, already stored (``StoredOutput`` dicts). The
    # control plane records them before the process ends SUCCEEDED.
    outputs: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        # Leave out what was not seen (None, "", False), but keep a real exit code 0.
        return {k: v for k, v in asdict(self).items() if v not in (None, "") and v is not False}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(**data)


# Why a target ended a job, as ``Event.reason`` says it; a pipeline's ``retry.on`` names these.
END_REASONS = ("lost", "preempted", "node_failure", "spot_interruption")


@dataclass
class Heartbeat:
    pool: str
    host: str
    target: str
    version: str
    capacity: int
    busy: int
    at: float = field(default_factory=time.time)
    # Celery's node name (``<name>@<host>``): tells two workers of one pool on one host apart.
    name: str = ""
    # This worker's poll cycles of the pool since it started (``workers.poll_stats``).
    polls: dict[str, Any] = field(default_factory=dict)
    # A Slurm pool's cluster as this worker sees it: {"reachable": bool, "rest_api_version":
    # "v0.0.42" or None, "detail": str}; None for other targets (executors' cluster_health).
    cluster: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Bytes of log a worker ships in one event; bigger outputs arrive over several polls.
LOG_CHUNK_BYTES = 256 * 1024
