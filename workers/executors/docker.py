"""The Docker target: a job is a detached container on the worker's host, driven through the
Docker Engine API (Docker itself, or Podman's compatible service).

Each run has a container named ``orch-<process id>`` and labelled ``orchestration.process``
and ``orchestration.pool``: submission looks the label up before it creates anything, and one
list call filtered on the pool label answers a whole poll. The handle is the container id.

Each run also has a run dir ``<work_root>/<process id>`` on the host, next to the engine:

- ``config.json``: the user's config, mounted read-only at ``/orch/config.json``
  (``ORCH_CONFIG_FILE``); ``script``, mounted read-only at ``/orch/script`` when the pipeline
  has one; ``work/``, mounted read-write at ``/orch/work`` (``ORCH_WORK_DIR``, the working dir);
- ``container`` (the container id), ``cancelled`` and ``timed_out``: markers the container
  cannot see, which outlive ``release()`` so a late duplicate job spec starts nothing and a
  stopped or timed-out container is reported as such.

Containers cannot reach the host: they run as a non-root user (pool setting ``user``; root
only where the pool has ``allow_root`` and the pipeline asks ``user: root``), with every
capability dropped, ``no-new-privileges``, a read-only root file system (a tmpfs at ``/tmp``),
no swap beyond their memory limit, and, on Podman, the run dir mounted ``nosuid,nodev``.

The engine does not enforce time limits: the poller does, from the poll item's submit time and
limit. Stops send SIGTERM (containers run with an init, which passes it on) and, on a later poll
past the grace period, SIGKILL: nothing waits for a container to end.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import threading
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from ..contract import JobSpec, PollItem, State
from .base import (
    Executor,
    ExecutorError,
    LogChunk,
    Status,
    Submission,
    time_limit_passed,
)
from .docker_confinement import bind_mode, give_work_dir, host_options, job_user

log = logging.getLogger(__name__)

LABEL_PROCESS = "orchestration.process"
LABEL_POOL = "orchestration.pool"
LABEL_PIPELINE = "orchestration.pipeline"
LABEL_MEMORY = "orchestration.memory_mb"
LABEL_TIME_LIMIT = "orchestration.time_limit_s"

CONFIG_PATH = "/orch/config.json"
SCRIPT_PATH = "/orch/script"
WORK_PATH = "/orch/work"

# Run-dir files the container cannot see; they outlive release().
TOMBSTONE = {"container", "cancelled", "timed_out"}

STOP_GRACE_S = 10  # after SIGTERM, how long a container has before SIGKILL
ORPHAN_GRACE_S = 600  # how old an unpolled container must be before the reaper removes it
CREATED_GRACE_S = 30  # a container still "created" this long after its submit died: start it

RUNNING = {"running", "paused", "restarting"}
CREATED = {"created", "configured", "initialized"}
EXITED = {"exited", "dead", "stopped"}

_EXIT_STATUS = re.compile(r"exited \((-?\d+)\)", re.IGNORECASE)
# What the container's init prints when it cannot exec the command (Podman's catatonit, tini).
_EXEC_FAILED = re.compile(r"failed to exec pid1: (.+)|exec (\S+) failed: (.+)")

# API versions negotiated with each engine, so only a worker's first executor asks.
_API_VERSIONS: dict[str, str] = {}
# Whether each engine is Podman (which takes nosuid,nodev on a bind; Docker refuses them).
_IS_PODMAN: dict[str, bool] = {}


class EngineUnreachable(ExecutorError):
    """The engine did not answer (transient): a failed call decides nothing."""


class EngineConflict(ExecutorError):
    """The engine refused because of the container's state or name (Docker's 409; Podman
    says so in a 500)."""


# Listings asked at most this often when Podman trips over a container exiting meanwhile.
LIST_ATTEMPTS = 3
_CONFLICT = ("already in use", "not running", "can only kill running", "state improper")


def default_work_root() -> Path:
    return Path(os.environ.get("ORCH_WORK_ROOT", "var/work")).absolute()


class DockerExecutor(Executor):
    """Pool settings (all optional): ``docker_host`` (default ``DOCKER_HOST``), ``api_version``,
    ``api_timeout_s`` (60), ``work_root`` (``ORCH_WORK_ROOT`` or ``var/work``; a path the
    engine can bind-mount), ``pull`` (``missing`` or ``never``), ``network`` (engine default),
    ``stop_grace_s`` (10), ``orphan_grace_s`` (600), ``keep_work_dir`` (false), ``user``
    (``uid:gid`` that jobs run as, 65534:65534), ``allow_root`` (false: a pipeline's
    ``user: root`` fails)."""

    target = "docker"

    # --- the engine -----------------------------------------------------------------------

    @property
    def docker_host(self) -> str:
        return (
            self.settings.get("docker_host")
            or os.environ.get("DOCKER_HOST")
            or "unix:///var/run/docker.sock"
        )

    @cached_property
    def client(self) -> docker.DockerClient:
        url = self.docker_host
        version = self.settings.get("api_version") or _API_VERSIONS.get(url, "auto")
        timeout = int(self.settings.get("api_timeout_s", 60))
        try:
            if self.settings.get("docker_host"):
                client = docker.DockerClient(base_url=url, version=version, timeout=timeout)
            else:  # DOCKER_HOST and its TLS variables, as the docker CLI reads them
                client = docker.from_env(version=version, timeout=timeout)
        except DockerException as exc:
            raise ExecutorError(
                f"no container engine answers at {url}: {exc} "
                "(start one with deploy/container-engine.sh, or set DOCKER_HOST)"
            ) from exc
        _API_VERSIONS[url] = client.api.api_version
        return client

    @property
    def is_podman(self) -> bool:
        url = self.docker_host
        if url not in _IS_PODMAN:
            version = self._engine("version", self.client.api.version)
            _IS_PODMAN[url] = any("podman" in (c.get("Name") or "").lower()
                                  for c in version.get("Components") or [])
        return _IS_PODMAN[url]

    def _engine(self, what: str, call, *args, **kwargs):
        """Every engine call goes through here: NotFound passes through for the caller to
        decide; any other failure becomes an ExecutorError naming the call and the engine."""
        try:
            return call(*args, **kwargs)
        except NotFound:
            raise
        except APIError as exc:
            message = f"container engine at {self.docker_host}: {what}: {exc.explanation or exc}"
            if exc.status_code == 409 or any(m in str(exc.explanation) for m in _CONFLICT):
                raise EngineConflict(message) from exc
            raise ExecutorError(message, permanent=exc.is_client_error()) from exc
        except (DockerException, requests.RequestException, OSError) as exc:
            raise EngineUnreachable(
                f"container engine at {self.docker_host} did not answer ({what}): {exc}"
            ) from exc

    def _list(self, **labels: str) -> list[dict[str, Any]]:
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        for attempt in range(LIST_ATTEMPTS):
            try:
                return self._engine("list containers", self.client.api.containers, all=True,
                                    filters=filters)
            except ExecutorError as exc:
                # Podman answers 500 "read /proc/<pid>/cgroup: no such process" when another
                # container exits during the listing: a read, so asking again is safe.
                if "no such process" not in str(exc) or attempt == LIST_ATTEMPTS - 1:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    # --- run dirs -------------------------------------------------------------------------

    @property
    def work_root(self) -> Path:
        return Path(self.settings.get("work_root") or default_work_root()).absolute()

    def run_dir(self, process_id: str) -> Path:
        if not process_id or "/" in process_id or process_id.startswith("."):
            raise ExecutorError(f"not a process id: {process_id!r}", permanent=True)
        return self.work_root / process_id

    # --- submit ---------------------------------------------------------------------------

    def find(self, spec: JobSpec) -> Submission | None:
        for found in self._list(**{LABEL_PROCESS: spec.process_id}):
            # Still "created" long after its submit: that submit died before the start. (A
            # younger one may be another delivery about to start it; a poll starts it later.)
            age = time.time() - float(found.get("Created") or time.time())
            stopped = (self.run_dir(spec.process_id) / "cancelled").exists()
            if found.get("State", "").lower() in CREATED and age > CREATED_GRACE_S and not stopped:
                self._start_container(found["Id"], spec)
            return Submission(found["Id"], State.RUNNING, self.host)
        tombstone = self.run_dir(spec.process_id) / "container"
        if tombstone.exists():  # released already: a late duplicate must start nothing
            return Submission(tombstone.read_text().strip(), State.RUNNING, self.host)
        return None

    def start(self, spec: JobSpec) -> Submission:
        if not spec.image:
            raise ExecutorError("the pipeline names no image for target docker", permanent=True)
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
        return Submission(container_id, State.RUNNING, self.host)

    def job_user(self, spec: JobSpec) -> str:
        return job_user(spec, self.pool, self.settings)

    def _prepare_run_dir(self, spec: JobSpec, user: str | None = None) -> Path:
        user = user or self.job_user(spec)
        run_dir = self.run_dir(spec.process_id)
        work = run_dir / "work"
        work.mkdir(parents=True, exist_ok=True)
        # The run dir (markers, config) is the worker's alone; only the work dir is the job's.
        run_dir.chmod(0o700)
        give_work_dir(work, user)
        _write_atomic(run_dir / "config.json", json.dumps(spec.config))
        if spec.script:
            _write_atomic(run_dir / "script", spec.script)
        return run_dir

    def _create(self, spec: JobSpec, run_dir: Path, user: str | None = None) -> str:
        user = user or self.job_user(spec)
        api = self.client.api
        ro, rw = bind_mode("ro", self.is_podman), bind_mode("rw", self.is_podman)
        binds = {
            str(run_dir / "config.json"): {"bind": CONFIG_PATH, "mode": ro},
            str(run_dir / "work"): {"bind": WORK_PATH, "mode": rw},
        }
        if spec.script:
            binds[str(run_dir / "script")] = {"bind": SCRIPT_PATH, "mode": ro}
        res = spec.resources
        memory = f"{res.memory_mb}m" if res.memory_mb else None
        host_config = api.create_host_config(
            binds=binds,
            init=True,  # an init passes SIGTERM on: a stop takes a moment, not the grace period
            **host_options(),
            nano_cpus=int(res.cpus * 1e9) if res.cpus else None,
            mem_limit=memory,
            memswap_limit=memory,  # no swap on top: over its memory a job is killed
            device_requests=(
                [docker.types.DeviceRequest(count=res.gpus, capabilities=[["gpu"]])]
                if res.gpus else None
            ),
            network_mode=self.settings.get("network") or None,
        )
        env = {"HOME": "/tmp", **spec.env}  # the root file system is read-only
        env.update(
            ORCH_PROCESS_ID=spec.process_id,
            ORCH_CONFIG_FILE=CONFIG_PATH,
            ORCH_WORK_DIR=WORK_PATH,
        )
        labels = {
            LABEL_PROCESS: spec.process_id,
            LABEL_POOL: self.pool,
            LABEL_PIPELINE: spec.pipeline,
            LABEL_MEMORY: str(res.memory_mb or ""),
            LABEL_TIME_LIMIT: str(res.time_limit_s or ""),
        }
        command = ["/bin/sh", SCRIPT_PATH] if spec.script else (list(spec.command) or None)
        create = dict(
            image=spec.image, command=command, name=spec.job_name, labels=labels,
            environment=env, working_dir=WORK_PATH, host_config=host_config, user=user,
            detach=True, use_config_proxy=False,
        )
        try:
            created = self._engine("create container", api.create_container, **create)
        except ImageNotFound:
            self._pull(spec.image)
            try:
                created = self._engine("create container", api.create_container, **create)
            except NotFound as exc:
                raise self._missing_image(spec.image, exc.explanation) from exc
        except NotFound as exc:
            raise self._missing_image(spec.image, exc.explanation) from exc
        log.info("process %s: created container %s", spec.process_id, created["Id"][:12])
        return created["Id"]

    def _pull(self, image: str) -> None:
        if self.settings.get("pull", "missing") == "never":
            raise self._missing_image(image, "pool setting pull is 'never'")
        try:
            self._engine(f"pull {image}", self.client.images.pull, image)
        except EngineUnreachable:
            raise  # the engine is down, not the image missing
        except (NotFound, ExecutorError) as exc:
            raise self._missing_image(image, getattr(exc, "explanation", None) or exc) from exc

    def _missing_image(self, image: str, reason: Any) -> ExecutorError:
        return ExecutorError(
            f"image {image!r} is not on the container engine at {self.docker_host} and could "
            f"not be pulled ({reason})",
            permanent=True,
        )

    def _start_container(self, container_id: str, spec: JobSpec) -> None:
        try:
            self._engine("start container", self.client.api.start, container_id)
        except NotFound as exc:
            raise ExecutorError(f"container {container_id[:12]} vanished before it started") \
                from exc
        except ExecutorError as exc:
            if not exc.permanent:
                raise  # left "created": the next delivery (or a poll) starts it
            self._remove(container_id)
            (self.run_dir(spec.process_id) / "container").unlink(missing_ok=True)
            raise ExecutorError(
                f"cannot start {spec.command or spec.image!r} in image {spec.image!r}: {exc}",
                permanent=True,
            ) from exc

    # --- poll -----------------------------------------------------------------------------

    def statuses(self, items: list[PollItem]) -> dict[str, Status]:
        if not items:
            return {}
        listed = {c["Id"]: c for c in self._list(**{LABEL_POOL: self.pool})}
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
        return answers

    def _status(self, item: PollItem, found: dict[str, Any], now: float) -> Status:
        state = (found.get("State") or "").lower()
        run_dir = self.run_dir(item.process_id)
        if state in RUNNING:
            if (run_dir / "cancelled").exists():  # keep at it: SIGKILL once the grace is over
                self._signal_quietly(item.handle, run_dir / "cancelled", str(now))
            elif (run_dir / "timed_out").exists() or self._past_time_limit(item, found, now):
                limit = self._time_limit(item, found)
                self._signal_quietly(item.handle, run_dir / "timed_out", str(limit))
                return Status(State.RUNNING, message=f"time limit of {limit} s reached: stopping")
            return Status(State.RUNNING)
        if state in CREATED:
            if (run_dir / "cancelled").exists():
                return Status(State.STOPPED, None, "stopped before it started")
            if now - float(found.get("Created") or now) > CREATED_GRACE_S:
                self._start_quietly(item.handle)
            return Status(State.SUBMITTED)
        if state in EXITED:
            return self._finished(item, found, self._exit_code(found))
        return Status(message=f"container is {state or 'in an unknown state'}")

    def _time_limit(self, item: PollItem, found: dict[str, Any]) -> int | None:
        label = (found.get("Labels") or {}).get(LABEL_TIME_LIMIT) or ""
        return item.time_limit_s or (int(label) if label.isdigit() else None)

    def _past_time_limit(self, item: PollItem, found: dict[str, Any], now: float) -> bool:
        # The poll item's values win; the labels cover a control plane that sent none.
        started = item.submitted_at or float(found.get("Created") or 0) or None
        limited = PollItem(item.process_id, item.handle, submitted_at=started,
                           time_limit_s=self._time_limit(item, found))
        return time_limit_passed(limited, now)

    def _exit_code(self, found: dict[str, Any]) -> int | None:
        match = _EXIT_STATUS.search(found.get("Status") or "")
        if match:
            return int(match.group(1))
        try:  # the list answer did not say: ask this one container
            attrs = self._engine("inspect container", self.client.api.inspect_container,
                                 found["Id"])
        except NotFound:
            return None
        return attrs.get("State", {}).get("ExitCode")

    def _finished(self, item: PollItem, found: dict[str, Any], code: int | None) -> Status:
        run_dir = self.run_dir(item.process_id)
        if (run_dir / "cancelled").exists():
            return Status(State.STOPPED, code, "stopped on request")
        if (run_dir / "timed_out").exists():
            limit = (run_dir / "timed_out").read_text()
            return Status(State.FAILED, code, f"time limit of {limit} s exceeded")
        if code == 0:
            return Status(State.SUCCEEDED, 0)
        if code == 137:
            memory = (found.get("Labels") or {}).get(LABEL_MEMORY)
            limit = f" (limit {memory} MB)" if memory else ""
            return Status(State.FAILED, code,
                          f"killed (exit code 137): out of memory{limit} or SIGKILL")
        if code is not None and 0 < code < 128 and (why := self._exec_failure(item.handle)):
            return Status(State.FAILED, code,
                          f"the command {found.get('Command') or ''!r} could not be started "
                          f"in image {found.get('Image')!r}: {why}")
        hint = {126: " (command not executable)", 127: " (command not found)"}.get(code, "")
        return Status(State.FAILED, code, f"exited with code {code}{hint}")

    def _exec_failure(self, handle: str) -> str | None:
        """The init's complaint when the command could not be executed, from the log's end."""
        try:
            tail = self._engine("read logs", self._logs, handle, tail=5)
        except (NotFound, ExecutorError):
            return None
        match = _EXEC_FAILED.search(tail.decode("utf-8", errors="replace"))
        if match is None:
            return None
        return (match.group(1) or f"{match.group(2)}: {match.group(3)}").strip()

    def read_log(self, item: PollItem, limit: int) -> LogChunk:
        # The Docker API has no byte offsets: read the whole log, keep what follows the offset.
        try:
            data = self._engine("read logs", self._logs, item.handle)
        except NotFound:
            return LogChunk()
        return LogChunk(data[item.log_offset:item.log_offset + limit])

    def _logs(self, handle: str, tail: int | None = None) -> bytes:
        """The container's stdout and stderr (the last ``tail`` lines), in one engine call.
        The SDK's ``logs()`` inspects the container first to learn whether it has a tty, which
        doubles a poll's calls; ours never have one, so the answer is always multiplexed."""
        api = self.client.api
        params = {"stdout": 1, "stderr": 1, "tail": tail or "all"}
        response = api._get(api._url("/containers/{0}/logs", handle), params=params)
        return api._get_result_tty(False, response, False)

    # --- stop, release, reap --------------------------------------------------------------

    def cancel(self, handle: str) -> None:
        try:
            attrs = self._engine("inspect container", self.client.api.inspect_container, handle)
        except NotFound:
            return
        state = attrs.get("State", {})
        never_started = (state.get("Status") or "").lower() in CREATED
        if not state.get("Running") and not never_started:
            return  # finished: nothing to stop, and no marker to leave
        process_id = (attrs.get("Config", {}).get("Labels") or {}).get(LABEL_PROCESS)
        if not process_id:
            raise ExecutorError(f"container {handle[:12]} is not one of ours", permanent=True)
        marker = self.run_dir(process_id) / "cancelled"
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
            self._engine("signal container", self.client.api.kill, handle, sig.name)
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
            self._engine("start container", self.client.api.start, handle)
        except (NotFound, ExecutorError) as exc:
            log.warning("start of created container %s failed: %s", handle[:12], exc)

    def release(self, handle: str) -> None:
        """Remove the finished container (its logs were shipped) and its run dir's contents,
        keeping the markers. A container still running is left alone."""
        try:
            attrs = self._engine("inspect container", self.client.api.inspect_container, handle)
        except NotFound:
            return
        if attrs.get("State", {}).get("Running"):
            log.warning("release of %s skipped: the container still runs", handle[:12])
            return
        self._remove(handle)
        process_id = (attrs.get("Config", {}).get("Labels") or {}).get(LABEL_PROCESS)
        if process_id:
            self._clean_run_dir(process_id)

    def reap_orphans(self, known_process_ids, grace_s: float | None = None) -> list[str]:
        """Remove this pool's containers whose process the control plane no longer polls.

        ``known_process_ids`` must hold every process of this pool on this host that the
        control plane still polls (all of one poll request's items). A container is removed
        only once it is older than ``grace_s`` (pool setting ``orphan_grace_s``, 600 s), so a
        job submitted since the poll list was made is safe. Returns the reaped process ids."""
        known = set(known_process_ids)
        grace = float(grace_s if grace_s is not None
                      else self.settings.get("orphan_grace_s", ORPHAN_GRACE_S))
        now = time.time()
        reaped = []
        for found in self._list(**{LABEL_POOL: self.pool}):
            process_id = (found.get("Labels") or {}).get(LABEL_PROCESS) or ""
            if process_id in known or now - float(found.get("Created") or now) < grace:
                continue
            log.warning("removing orphan container %s of process %s (%s)",
                        found["Id"][:12], process_id, found.get("Status"))
            self._remove(found["Id"])
            if process_id:
                self._clean_run_dir(process_id)
            reaped.append(process_id)
        return reaped

    def _remove(self, container_id: str) -> None:
        try:
            self._engine("remove container", self.client.api.remove_container, container_id,
                         force=True, v=True)
        except NotFound:
            return
        log.info("removed container %s", container_id[:12])

    def _clean_run_dir(self, process_id: str) -> None:
        if self.settings.get("keep_work_dir"):
            return
        run_dir = self.run_dir(process_id)
        if not run_dir.is_dir():
            return
        for path in run_dir.iterdir():
            if path.name in TOMBSTONE:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` whole: a container that mounted the old file keeps reading it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
