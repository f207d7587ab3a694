"""The Docker executor: submission, polls, stops and release of a pool's containers, on the
engine (``engine``), from the container a job spec becomes (``container_spec``) and its run
dir (``run_dirs``), with the engine's states read as ours (``states``)."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import docker
from docker.errors import NotFound

from ...contract import JobSpec, PollItem, State
from ..base import Executor, ExecutorError, LogChunk, Status, Submission
from . import log_reads, states
from .confinement import job_user
from .container_spec import LABEL_POOL, LABEL_PROCESS, attempt_of, create_request
from .engine import Engine, EngineConflict
from .reaper import ORPHAN_GRACE_S, reap_orphans
from .run_dirs import OUTPUTS_DIR, OUTPUTS_SPEC, RunDirs

log = logging.getLogger(__name__)

STOP_GRACE_S = 10  # after SIGTERM, how long a container has before SIGKILL
CREATED_GRACE_S = 30  # a container still "created" this long after its submit died: start it


@dataclass
class DockerStatus(Status):
    """A running container's status, with what the poll learnt of its log: the log file's
    size (None: out of reach) and whether this poll reads the log."""

    log_size: int | None = None
    read_log: bool = True


class DockerExecutor(Executor):
    """Pool settings (all optional): ``docker_host`` (default ``DOCKER_HOST``), ``api_version``,
    ``api_timeout_s`` (60), ``work_root`` (``ORCH_WORK_ROOT`` or ``var/work``; a path the
    engine can bind-mount), ``pull`` (``missing`` or ``never``), ``network`` (engine default),
    ``stop_grace_s`` (10), ``orphan_grace_s`` (600), ``keep_work_dir`` (false), ``user``
    (``uid:gid`` that jobs run as, 65534:65534), ``allow_root`` (false: a pipeline's
    ``user: root`` fails), ``log_reads_per_poll`` (no limit: see ``log_reads``)."""

    target = "docker"

    def __init__(self, pool: str, settings: dict[str, Any] | None = None):
        super().__init__(pool, settings)
        self.engine = Engine(self.settings)
        self.run_dirs = RunDirs(self.settings)

    @property
    def docker_host(self) -> str:
        return self.engine.host

    @property
    def client(self) -> docker.DockerClient:
        return self.engine.client

    def run_dir(self, process_id: str, attempt: int = 1) -> Path:
        return self.run_dirs.of(process_id, attempt)

    # --- submit ---------------------------------------------------------------------------

    def find(self, spec: JobSpec) -> Submission | None:
        run_dir = self.run_dir(spec.process_id, spec.attempt)
        for found in self.engine.containers(**{LABEL_PROCESS: spec.process_id}):
            if attempt_of(found.get("Labels")) != spec.attempt:
                continue  # another attempt's job: this attempt's is a job of its own
            # Still "created" long after its submit: that submit died before the start. (A
            # younger one may be another delivery about to start it; a poll starts it later.)
            age = time.time() - float(found.get("Created") or time.time())
            stopped = (run_dir / "cancelled").exists()
            if states.state_of(found) in states.CREATED and age > CREATED_GRACE_S \
                    and not stopped:
                self._start_container(found["Id"], spec)
            return Submission(found["Id"], State.RUNNING, self.host)
        tombstone = run_dir / "container"
        if tombstone.exists():  # released already: a late duplicate must start nothing
            return Submission(tombstone.read_text().strip(), State.RUNNING, self.host)
        return None

    def start(self, spec: JobSpec) -> Submission:
        user = self.job_user(spec)
        run_dir = self._prepare_run_dir(spec, user)
        try:
            container_id = self._create(spec, run_dir, user)
        except EngineConflict:
            found = self.find(spec)  # another delivery of this spec created it just now
            if found is None:
                raise
            return found
        (run_dir / "container").write_text(container_id)
        self._start_container(container_id, spec)
        # The engine knows when it started and where it keeps the log: RUNNING at once, at
        # the container's own start time, and the log read only when that file grows.
        attrs = self._inspect_quietly(container_id)
        log_reads.remember(run_dir, attrs)
        return Submission(container_id, State.RUNNING, self.host,
                          started_at=states.started_at(attrs))

    def _inspect_quietly(self, container_id: str) -> dict[str, Any] | None:
        try:
            return self.engine.inspect(container_id)
        except ExecutorError as exc:  # it runs; only its start time and log path are unknown
            log.warning("inspect of started container %s failed: %s", container_id[:12], exc)
            return None

    def job_user(self, spec: JobSpec) -> str:
        return job_user(spec, self.pool, self.settings)

    def _prepare_run_dir(self, spec: JobSpec, user: str | None = None) -> Path:
        return self.run_dirs.prepare(spec, user or self.job_user(spec))

    def _create(self, spec: JobSpec, run_dir: Path, user: str | None = None) -> str:
        request = create_request(
            spec, self.pool, self.settings, run_dir, user or self.job_user(spec),
            is_podman=self.engine.is_podman, api_version=self.client.api.api_version)
        container_id = self.engine.create(request)
        log.info("process %s: created container %s", spec.process_id, container_id[:12])
        return container_id

    def _start_container(self, container_id: str, spec: JobSpec) -> None:
        try:
            self.engine.call("start container", self.client.api.start, container_id)
        except NotFound as exc:
            raise ExecutorError(f"container {container_id[:12]} vanished before it started") \
                from exc
        except ExecutorError as exc:
            if not exc.permanent:
                raise  # left "created": the next delivery (or a poll) starts it
            self.engine.remove(container_id)
            (self.run_dir(spec.process_id, spec.attempt) / "container").unlink(missing_ok=True)
            raise ExecutorError(
                f"cannot start {spec.command or spec.image!r} in image {spec.image!r}: {exc}",
                permanent=True,
            ) from exc

    # --- poll -----------------------------------------------------------------------------

    def statuses(self, items: list[PollItem]) -> dict[str, Status]:
        if not items:
            return {}
        listed = {c["Id"]: c for c in self.engine.containers(**{LABEL_POOL: self.pool})}
        now = time.time()
        answers = {}
        for item in items:
            found = listed.get(item.handle)
            if found is None or (found.get("Labels") or {}).get(LABEL_PROCESS) != item.process_id:
                answers[item.handle] = Status(
                    missing=True,
                    message=f"no container {item.handle[:12]} of pool {self.pool} on {self.host}",
                )
                continue
            answers[item.handle] = self._status(item, found, now)
        self._choose_log_reads(items, answers)
        return answers

    def _choose_log_reads(self, items: list[PollItem], answers: dict[str, Status]) -> None:
        """Which running containers' logs this poll reads (``log_reads``): those whose log
        file grew, and of those whose file is out of reach, all or a turn of the pool's
        ``log_reads_per_poll``. Ended and not yet started containers are always read."""
        unknown = []
        for item in items:
            status = answers[item.handle]
            if status.state != State.RUNNING:
                continue
            size = log_reads.log_size(self.run_dir(item.process_id, item.attempt))
            answers[item.handle] = status = DockerStatus(**vars(status), log_size=size)
            if size is None:
                unknown.append(item.handle)
            elif log_reads.unchanged(item, size):
                status.read_log = False
        budget = self.settings.get("log_reads_per_poll")
        chosen = log_reads.turn(self.pool, unknown, None if budget is None else int(budget))
        for handle in unknown:
            cast(DockerStatus, answers[handle]).read_log = handle in chosen

    def read_log_in_poll(self, item: PollItem, status: Status, limit: int) -> LogChunk:
        if not isinstance(status, DockerStatus):
            return self.read_log(item, limit)
        if not status.read_log:
            return LogChunk()
        chunk = self.read_log(item, limit)
        if status.log_size is not None and len(chunk.data) < limit:  # read to its end
            chunk.cursor = log_reads.cursor(status.log_size)
        return chunk

    def _status(self, item: PollItem, found: dict[str, Any], now: float) -> Status:
        state = states.state_of(found)
        run_dir = self.run_dir(item.process_id, attempt_of(found.get("Labels")))
        if state in states.RUNNING:
            if (run_dir / "cancelled").exists():  # keep at it: SIGKILL once the grace is over
                self._signal_quietly(item.handle, run_dir / "cancelled", str(now))
            elif (run_dir / "timed_out").exists() or states.past_time_limit(item, found, now):
                limit = states.time_limit(item, found)
                self._signal_quietly(item.handle, run_dir / "timed_out", str(limit))
                return Status(State.RUNNING, message=f"time limit of {limit} s reached: stopping")
            return Status(State.RUNNING)
        if state in states.CREATED:
            if (run_dir / "cancelled").exists():
                return Status(State.STOPPED, None, "stopped before it started")
            if now - float(found.get("Created") or now) > CREATED_GRACE_S:
                self._start_quietly(item.handle)
            return Status(State.SUBMITTED)
        if state in states.EXITED:
            return states.finished(run_dir, found, self._exit_code(found),
                                   lambda: self._exec_failure(item.handle))
        return Status(message=f"container is {state or 'in an unknown state'}")

    def _exit_code(self, found: dict[str, Any]) -> int | None:
        code = states.listed_exit_code(found)
        if code is not None:
            return code
        attrs = self.engine.inspect(found["Id"])  # the list answer did not say: ask this one
        return None if attrs is None else attrs.get("State", {}).get("ExitCode")

    def _exec_failure(self, handle: str) -> str | None:
        """The init's complaint when the command could not be executed, from the log's end."""
        try:
            return states.exec_failure_in(self.engine.logs(handle, tail=5))
        except (NotFound, ExecutorError):
            return None

    def read_log(self, item: PollItem, limit: int) -> LogChunk:
        # The Docker API has no byte offsets: read the whole log, keep what follows the offset.
        try:
            data = self.engine.logs(item.handle)
        except NotFound:
            return LogChunk()
        return LogChunk(data[item.log_offset:item.log_offset + limit])

    def outputs_place(self, item: PollItem) -> tuple[Path, Path]:
        run_dir = self.run_dir(item.process_id, item.attempt)
        return run_dir / OUTPUTS_DIR, run_dir / OUTPUTS_SPEC

    # --- stop, release, reap --------------------------------------------------------------

    def cancel(self, handle: str) -> None:
        attrs = self.engine.inspect(handle)
        if attrs is None:
            return
        state = attrs.get("State", {})
        never_started = (state.get("Status") or "").lower() in states.CREATED
        if not state.get("Running") and not never_started:
            return  # finished: nothing to stop, and no marker to leave
        labels = attrs.get("Config", {}).get("Labels") or {}
        process_id = labels.get(LABEL_PROCESS)
        if not process_id:
            raise ExecutorError(f"container {handle[:12]} is not one of ours", permanent=True)
        marker = self.run_dir(process_id, attempt_of(labels)) / "cancelled"
        if never_started:  # the marker keeps it from being started; the poll says STOPPED
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(time.time()))
            return
        self._signal(handle, marker, str(time.time()))

    def _signal(self, handle: str, marker: Path, text: str) -> None:
        """SIGTERM the container and leave ``marker``; SIGKILL once the grace has passed."""
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(text)
        overdue = time.time() - marker.stat().st_mtime > float(
            self.settings.get("stop_grace_s", STOP_GRACE_S))
        sig = signal.SIGKILL if overdue else signal.SIGTERM
        try:
            self.engine.call("signal container", self.client.api.kill, handle, sig.name)
        except (NotFound, EngineConflict):
            return  # it ended meanwhile
        log.info("container %s: sent %s", handle[:12], sig.name)

    def _signal_quietly(self, handle: str, marker: Path, text: str) -> None:
        try:
            self._signal(handle, marker, text)
        except ExecutorError as exc:  # the next poll signals again
            log.warning("signal to container %s failed: %s", handle[:12], exc)

    def _start_quietly(self, handle: str) -> None:
        try:
            self.engine.call("start container", self.client.api.start, handle)
        except (NotFound, ExecutorError) as exc:
            log.warning("start of created container %s failed: %s", handle[:12], exc)

    def release(self, handle: str) -> None:
        """Remove the finished container (its logs were shipped) and its run dir's contents,
        keeping the markers. A container still running is left alone."""
        attrs = self.engine.inspect(handle)
        if attrs is None:
            return
        if attrs.get("State", {}).get("Running"):
            log.warning("release of %s skipped: the container still runs", handle[:12])
            return
        self.engine.remove(handle)
        labels = attrs.get("Config", {}).get("Labels") or {}
        if labels.get(LABEL_PROCESS):
            self.run_dirs.clean(labels[LABEL_PROCESS], attempt_of(labels))

    def reap_orphans(self, known_process_ids, grace_s: float | None = None) -> list[str]:
        """Remove this pool's containers whose process the control plane no longer polls.

        ``known_process_ids`` must hold every process of this pool on this host that the
        control plane still polls (all of one poll request's items). A container is removed
        only once it is older than ``grace_s`` (pool setting ``orphan_grace_s``, 600 s), so a
        job submitted since the poll list was made is safe. Returns the reaped process ids."""
        grace = float(grace_s if grace_s is not None
                      else self.settings.get("orphan_grace_s", ORPHAN_GRACE_S))
        return reap_orphans(self.engine, self.pool, known_process_ids, grace,
                            self.run_dirs.clean)
