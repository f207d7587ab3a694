"""The local target: a job is a detached process on the worker's host.

Each run has a work dir ``<work_root>/<process id>`` holding ``config.json`` (the user's config,
passed by path in ``ORCH_CONFIG_FILE``), ``output.log``, ``pid`` and, once the job ended,
``exit_code`` (see ``local_runner``). The handle is the process id; the work dir is found from
it, so a worker that restarts knows every job of its host without any list of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..contract import JobSpec, PollItem, State
from .base import Executor, ExecutorError, LogChunk, Status, Submission

# Keys of the worker's environment a job inherits; nothing else (the broker URL stays out).
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
# After a stop, how long a job has to end on SIGTERM before its group gets SIGKILL.
STOP_GRACE_S = 10
# Work-dir files that outlive release(): enough for a late duplicate job spec to see the run.
TOMBSTONE = {"pid", "exit_code", "cancelled", "timed_out", "claim"}


def default_work_root() -> Path:
    return Path(os.environ.get("ORCH_WORK_ROOT", "var/work")).absolute()


class LocalExecutor(Executor):
    target = "local"

    @property
    def work_root(self) -> Path:
        return Path(self.settings.get("work_root") or default_work_root())

    def work_dir(self, handle: str) -> Path:
        if not handle or "/" in handle or handle.startswith("."):
            raise ExecutorError(f"not a local handle: {handle!r}", permanent=True)
        return self.work_root / handle

    # --- submit -------------------------------------------------------------------------------

    def find(self, spec: JobSpec) -> Submission | None:
        work_dir = self.work_dir(spec.process_id)
        if (work_dir / "pid").exists() or (work_dir / "exit_code").exists():
            return Submission(spec.process_id, State.RUNNING, self.host)
        return None

    def start(self, spec: JobSpec) -> Submission:
        """Two deliveries of one spec on this host start one job: the one holding the lock on
        ``claim`` starts it. The lock dies with its holder, so a delivery whose worker was
        killed mid-start leaves a claim the next delivery takes over (unless the killed one's
        runner is still starting the job)."""
        command = self._command(spec)
        work_dir = self.work_dir(spec.process_id)
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
        (work_dir / "config.json").write_text(json.dumps(spec.config))
        if spec.script:
            (work_dir / "script").write_text(spec.script)
        runner = [
            sys.executable, "-m", f"{__package__}.local_runner",
            str(work_dir), str(spec.resources.time_limit_s), "--", *command,
        ]
        done = subprocess.run(
            runner, env=self._job_env(spec, work_dir), cwd=work_dir,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
        )
        if done.returncode != 0:
            (work_dir / "claim").unlink(missing_ok=True)
            raise ExecutorError(done.stderr.strip() or "the job did not start", permanent=True)
        return Submission(spec.process_id, State.RUNNING, self.host)

    def _command(self, spec: JobSpec) -> list[str]:
        if spec.image:
            raise ExecutorError(
                f"the local target cannot run image {spec.image!r}; use target docker",
                permanent=True,
            )
        if spec.script:
            return ["/bin/sh", "script"]
        if not spec.command:
            raise ExecutorError("the pipeline names no command or script", permanent=True)
        return list(spec.command)

    def _job_env(self, spec: JobSpec, work_dir: Path) -> dict[str, str]:
        env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
        env.update(spec.env)
        env.update(
            ORCH_PROCESS_ID=spec.process_id,
            ORCH_WORK_DIR=str(work_dir),
            ORCH_CONFIG_FILE=str(work_dir / "config.json"),
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
        runner_pid, job_pid = _read_pids(work_dir)
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
        if not (runner_pid and _is_runner(runner_pid, work_dir)):
            return
        overdue = time.time() - float(marker.read_text() or 0) > STOP_GRACE_S
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job_pid, signal.SIGKILL if overdue else signal.SIGTERM)

    def read_log(self, item: PollItem, limit: int) -> LogChunk:
        path = self.work_dir(item.handle) / "output.log"
        try:
            with open(path, "rb") as out:
                out.seek(item.log_offset)
                return LogChunk(out.read(limit))
        except FileNotFoundError:
            return LogChunk()

    def release(self, handle: str) -> None:
        for path in self.work_dir(handle).iterdir():
            if path.name in TOMBSTONE:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _finished(work_dir: Path, code: int) -> Status:
    if (work_dir / "cancelled").exists():
        return Status(State.STOPPED, code, "stopped on request")
    if (work_dir / "timed_out").exists():
        limit = (work_dir / "timed_out").read_text()
        return Status(State.FAILED, code, f"time limit of {limit} s exceeded")
    if code == 0:
        return Status(State.SUCCEEDED, 0)
    if code == 127 and not (work_dir / "pid").exists():
        return Status(State.FAILED, code, "the command could not be started")
    return Status(State.FAILED, code, f"exited with code {code}")


def _claim(work_dir: Path) -> tuple[int, bool] | None:
    """An fd holding the exclusive lock on ``work_dir/claim`` and whether the claim existed
    before (its holder died, or started the job and let go), or None while another delivery
    holds it. A new claim is locked before it appears (link of a locked file), so nobody ever
    sees it unlocked while its claimant lives."""
    claim = work_dir / "claim"
    draft = work_dir / f".claim-{os.getpid()}-{threading.get_ident()}"
    fd = os.open(draft, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
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
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _read_pids(work_dir: Path) -> tuple[int | None, int | None]:
    try:
        runner, job = (int(x) for x in (work_dir / "pid").read_text().split())
        return runner, job
    except (FileNotFoundError, ValueError):
        return None, None


def _is_runner(pid: int, work_dir: Path) -> bool:
    """True when ``pid`` is alive and is this work dir's runner (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(work_dir).encode() in cmdline
