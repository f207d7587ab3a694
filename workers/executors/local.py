"""The local target: a job is a detached process on the worker's host.

Each run has a run dir ``<work_root>/<process id>`` (mode 0711, the worker's) holding
``output.log``, ``pid`` and, once the job ended, ``exit_code`` (see ``local_runner``), and the
job's own work dir ``work`` (mode 0700, the job's user's) with ``config.json`` (the user's
config, passed by path in ``ORCH_CONFIG_FILE``) and the script. Datasets are staged read-only
in ``inputs`` (``ORCH_INPUT_DIR``; each dataset field of the config holds its file's path) and
the job writes its outputs to ``outputs`` (``ORCH_OUTPUT_DIR``, the job's user's), stored when
a poll sees the job end. The job may write only its work and output dirs: the files the
worker trusts (pid, exit code, log, ``outputs.json``) are out of its reach. The handle
is the process id; the run dir is found from it, so a worker that restarts knows every job of
its host without any list of its own.

Pool settings: ``work_root``; ``job_user`` and ``job_uids``, who jobs run as (see
``local_users``: by default a uid of its own for each job, never root); ``keep_work_dir``
(false), true keeps a finished run's files, its work dir with them (and, for a dynamic user,
the uid's lease until someone removes the work dir); a job's memory and cpus are enforced
(see ``local_limits``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from .. import environment, outputs, staging
from ..contract import JobSpec, PollItem, State
from . import local_limits, local_starter, local_users, workdirs
from .base import Executor, ExecutorError, LogChunk, Status, Submission
from .local_runner import JOB_DIR

log = logging.getLogger(__name__)

# Keys of the worker's environment a job inherits; nothing else (the broker URL stays out).
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
# After a stop, how long a job has to end on SIGTERM before its group gets SIGKILL.
STOP_GRACE_S = 10
# Run-dir files that outlive release(): enough for a late duplicate job spec to see the run.
TOMBSTONE = {"pid", "exit_code", "cancelled", "timed_out", "limit_note", "claim", "outputs.json"}
# The run dir's inputs dir (read-only datasets), the job's output dir and the outputs spec the
# poll that sees the job end stores them by.
INPUTS_DIR, OUTPUTS_DIR, OUTPUTS_SPEC = "inputs", "outputs", "outputs.json"
# What the worker said once in its log (how jobs are confined), so it says it only once.
_said: set[str] = set()


class LocalExecutor(Executor):
    target = "local"

    @property
    def work_root(self) -> Path:
        return Path(self.settings.get("work_root") or workdirs.default_work_root())

    def work_dir(self, handle: str) -> Path:
        return workdirs.run_dir_of(self.work_root, handle)

    # --- submit -------------------------------------------------------------------------------

    def find(self, spec: JobSpec) -> Submission | None:
        handle = workdirs.run_key(spec.process_id, spec.attempt)  # a retry's run dir is new
        work_dir = self.work_dir(handle)
        if (work_dir / "pid").exists() or (work_dir / "exit_code").exists():
            return Submission(handle, State.RUNNING, self.host)
        return None

    def start(self, spec: JobSpec) -> Submission:
        """Two deliveries of one spec on this host start one job: the one holding the lock on
        ``claim`` starts it. The lock dies with its holder, so a delivery whose worker was
        killed mid-start leaves a claim the next delivery takes over (unless the killed one's
        runner is still starting the job)."""
        command = self._command(spec)
        work_dir = self.work_dir(workdirs.run_key(spec.process_id, spec.attempt))
        work_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(300):
            claim = _claim(work_dir)
            if claim is not None:
                fd, taken_over = claim
                try:
                    if (found := self.find(spec)) is not None:
                        return found
                    if not (taken_over and _starting(work_dir)):
                        return self._launch(spec, command, work_dir)
                finally:
                    os.close(fd)
            elif (found := self.find(spec)) is not None:
                return found
            time.sleep(0.1)
        raise ExecutorError(f"another delivery of {spec.process_id} is still starting it")

    def _launch(self, spec: JobSpec, command: list[str], work_dir: Path) -> Submission:
        job_dir = work_dir / JOB_DIR
        self._remove_output_dir(work_dir)  # left by a start that failed
        self._remove_job_dir(job_dir)
        try:
            user = local_users.job_user(self.settings, job_dir)
            self._confine(work_dir, user)
            # Datasets read-only in the run dir, by path in the config; outputs in a dir of
            # the job's user, stored by the poll that sees the job end.
            staging.stage_inputs(spec, work_dir / INPUTS_DIR, link=not user.is_worker)
            config = staging.config_for_job(spec, str(work_dir / INPUTS_DIR))
            if spec.outputs:
                _dir_for(user, work_dir / OUTPUTS_DIR)
                outputs.save_spec(work_dir / OUTPUTS_SPEC, spec.outputs)
            _write_for(user, job_dir / "config.json", json.dumps(config))
            if spec.script:
                _write_for(user, job_dir / "script", spec.script)
            runner = [
                str(work_dir),
                "--user", str(user), *(["--dynamic-user"] if user.dynamic else []),
                "--time-limit", str(spec.resources.time_limit_s),
                "--memory-mb", str(spec.resources.memory_mb), "--cpus", str(spec.resources.cpus),
                "--", *command,
            ]
            try:
                answer = local_starter.start_job(runner, self._job_env(spec, job_dir))
            except ExecutorError:
                if (work_dir / "pid").exists():  # the starter failed after the job started
                    return Submission(workdirs.run_key(spec.process_id, spec.attempt),
                                      State.RUNNING, self.host)
                raise
            if answer != "ok":
                raise ExecutorError(answer or "the job did not start", permanent=True)
        except (ExecutorError, OSError):  # nothing runs: the next delivery starts afresh
            (work_dir / "claim").unlink(missing_ok=True)
            self._remove_output_dir(work_dir)
            self._remove_job_dir(job_dir)
            raise
        self._say_once(work_dir, user)
        return Submission(workdirs.run_key(spec.process_id, spec.attempt), State.RUNNING, self.host)

    def _confine(self, work_dir: Path, user: local_users.JobUser) -> None:
        """Before a job of another user starts: its run dir and the work root reachable by
        path but not listable, the project's var/ and .env out of its reach, and a clear
        error when a directory above the work root keeps the job from its work dir."""
        if user.is_worker:
            return
        environment.make_var_private(reachable=[self.work_root])
        for directory in (self.work_root, work_dir):
            if directory.stat().st_uid == os.geteuid():
                directory.chmod(0o711)
        blocked = local_users.unreachable_ancestor(work_dir, user)
        if blocked is not None:
            raise ExecutorError(
                f"settings.work_root: {self.work_root} cannot be reached by the job's user "
                f"(uid {user.uid}): {blocked} has mode {blocked.stat().st_mode & 0o777:o}; "
                "make it traversable (chmod o+x) or choose another work_root", permanent=True)

    def _say_once(self, work_dir: Path, user: local_users.JobUser) -> None:
        if user.is_worker and "worker" not in _said:
            _said.add("worker")
            log.warning("pool %s: local jobs run as this worker's own user (uid %s) and can "
                        "read what it can: only a worker running as root gives each job a "
                        "user of its own", self.pool, user.uid)
        mechanism = _limits(work_dir).get("mechanism", "")
        if mechanism and mechanism not in _said:
            _said.add(mechanism)
            log.info("pool %s: local jobs' memory and cpus are enforced with %s",
                     self.pool, mechanism)

    def _remove_output_dir(self, work_dir: Path) -> None:
        """The job's output dir, removed before its user's uid is given back."""
        staging.remove_tree(work_dir / OUTPUTS_DIR)

    def _remove_job_dir(self, job_dir: Path) -> None:
        """Remove the job's work dir and give back the uid it was leased to."""
        try:
            owner = job_dir.lstat().st_uid
        except FileNotFoundError:
            return
        shutil.rmtree(job_dir, ignore_errors=True)
        if owner != os.geteuid():
            local_users.end_lease(job_dir, owner)

    def _command(self, spec: JobSpec) -> list[str]:
        """What the runner starts. ``submit`` has refused what no local job may ask
        (``contract.job_refusals``): an image, or neither a command nor a script."""
        if spec.user:
            raise ExecutorError(f"run.user: the local target never runs a job as "
                                f"{spec.user!r}; its pool's job_user decides", permanent=True)
        if spec.script:
            return ["/bin/sh", "script"]
        return list(spec.command)

    def _job_env(self, spec: JobSpec, job_dir: Path) -> dict[str, str]:
        env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
        env.update(spec.env)
        if spec.inputs:
            env["ORCH_INPUT_DIR"] = str(job_dir.parent / INPUTS_DIR)
        if spec.outputs:
            env["ORCH_OUTPUT_DIR"] = str(job_dir.parent / OUTPUTS_DIR)
        env.update(
            ORCH_PROCESS_ID=spec.process_id,
            ORCH_WORK_DIR=str(job_dir),
            ORCH_CONFIG_FILE=str(job_dir / "config.json"),
            # Its own dir for home and temporary files: private, and removed with the job.
            HOME=str(job_dir),
            TMPDIR=str(job_dir),
            PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        )
        return env

    # --- poll ---------------------------------------------------------------------------------

    def statuses(self, items: list[PollItem]) -> dict[str, Status]:
        return {item.handle: self._status(item) for item in items}

    def _status(self, item: PollItem) -> Status:
        work_dir = self.work_dir(item.handle)
        code = _read_int(work_dir / "exit_code")
        if code is not None:
            return _finished(work_dir, code)
        runner_pid, _ = _read_pids(work_dir)
        if runner_pid and _is_runner(runner_pid, work_dir):
            return Status(State.RUNNING)
        code = _read_int(work_dir / "exit_code")  # it may have ended since the first look
        if code is not None:
            return _finished(work_dir, code)
        return Status(missing=True, message="the job's runner is gone and left no exit code")

    def cancel(self, handle: str) -> None:
        work_dir = self.work_dir(handle)
        if (work_dir / "exit_code").exists() or not (work_dir / "pid").exists():
            return
        marker = work_dir / "cancelled"
        if not marker.exists():
            marker.write_text(str(time.time()))
        runner_pid, job_pid = _read_pids(work_dir)
        if not (runner_pid and job_pid and _is_runner(runner_pid, work_dir)):
            return
        overdue = time.time() - float(marker.read_text() or 0) > STOP_GRACE_S
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job_pid, signal.SIGKILL if overdue else signal.SIGTERM)

    def read_log(self, item: PollItem, limit: int) -> LogChunk:
        path = self.work_dir(item.handle) / "output.log"
        return LogChunk(workdirs.read_from(path, item.log_offset, limit))

    def outputs_place(self, item: PollItem) -> tuple[Path, Path]:
        work_dir = self.work_dir(item.handle)
        return work_dir / OUTPUTS_DIR, work_dir / OUTPUTS_SPEC

    def release(self, handle: str) -> None:
        """Free the job's cgroups; unless the pool keeps work dirs, remove its output and work
        dirs (giving its uid back) and its run dir's files but the markers."""
        work_dir = self.work_dir(handle)
        local_limits.remove(_limits(work_dir).get("cgroups", []))
        if workdirs.keep_work_dir(self.settings):
            return
        outputs.mark_released(work_dir / OUTPUTS_SPEC)
        self._remove_output_dir(work_dir)
        self._remove_job_dir(work_dir / JOB_DIR)
        workdirs.clean_run_dir(work_dir, TOMBSTONE)


def _finished(work_dir: Path, code: int) -> Status:
    if (work_dir / "cancelled").exists():
        return Status(State.STOPPED, code, "stopped on request")
    if (work_dir / "timed_out").exists():
        limit = (work_dir / "timed_out").read_text()
        return Status(State.FAILED, code, f"time limit of {limit} s exceeded")
    if code != 0 and (work_dir / "limit_note").exists():
        return Status(State.FAILED, code, (work_dir / "limit_note").read_text())
    if code == 0:
        return Status(State.SUCCEEDED, 0)
    if code == 127 and not (work_dir / "pid").exists():
        return Status(State.FAILED, code, "the command could not be started")
    return Status(State.FAILED, code, f"exited with code {code}")


def _write_for(user: local_users.JobUser, path: Path, text: str) -> None:
    """A new file only the job's user reads (never through a link planted in its dir)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        if not user.is_worker:
            os.fchown(fd, user.uid, user.gid)
        out.write(text)


def _dir_for(user: local_users.JobUser, path: Path) -> None:
    """A new dir only the job's user may read and write (its output dir)."""
    path.mkdir(mode=0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if not user.is_worker:
            os.fchown(fd, user.uid, user.gid)
    finally:
        os.close(fd)


def _limits(work_dir: Path) -> dict:
    """What the job's runner wrote of its limits (mechanism, cgroups), or {}."""
    try:
        return json.loads((work_dir / "limits").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _claim(work_dir: Path) -> tuple[int, bool] | None:
    """An fd holding the exclusive lock on ``work_dir/claim`` and whether the claim existed
    before (its holder died, or started the job and let go), or None while another delivery
    holds it. A new claim is locked before it appears (link of a locked file), so nobody ever
    sees it unlocked while its claimant lives."""
    claim = work_dir / "claim"
    draft = work_dir / f".claim-{os.getpid()}-{threading.get_ident()}"
    fd = os.open(draft, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.link(draft, claim)
        return fd, False
    except FileExistsError:
        os.close(fd)
    finally:
        draft.unlink(missing_ok=True)
    fd = os.open(claim, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd, True


def _starting(work_dir: Path) -> bool:
    """True while a runner of this work dir (or its job) lives: a delivery killed after it
    launched the runner left a job that is about to write its pid."""
    wanted = str(work_dir).encode() + b"\0"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted in (entry / "cmdline").read_bytes():
                return True
            if os.readlink(entry / "cwd") == str(work_dir):
                return True
        except OSError:
            continue
    return False


def _read_int(path: Path) -> int | None:
    try:
        return int(workdirs.read_small(path) or "")
    except ValueError:
        return None


def _read_pids(work_dir: Path) -> tuple[int | None, int | None]:
    try:
        runner, job = (int(x) for x in (workdirs.read_small(work_dir / "pid") or "").split())
        return runner, job
    except ValueError:
        return None, None


def _is_runner(pid: int, work_dir: Path) -> bool:
    """True when ``pid`` is alive and is this work dir's runner (not a recycled pid): a runner
    forked by the starter works in its run dir; one started on its own names it."""
    try:
        if os.readlink(f"/proc/{pid}/cwd") == os.path.realpath(work_dir):  # links resolved
            return True
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(work_dir).encode() in cmdline
