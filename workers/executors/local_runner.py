"""Runs one local job, detached from the worker that started it.

    python -m orchestration_worker.executors.local_runner RUN_DIR --user UID:GID \
        --time-limit S --memory-mb N --cpus C -- COMMAND...

A worker does not start an interpreter per job: it keeps one starter (``local_starter``) that
forks a runner for each job from these same arguments (``start``). Run as above, the first
process forks and waits only until the job has started (or failed to), then exits, so the
worker is never the parent of a long job and no worker slot is held while it runs. The
forked runner stays privileged: it puts the job in a cgroup of its own (``local_limits``),
starts the command in ``RUN_DIR/work`` as the job's user with no supplementary groups and in
its own process group (cancel signals the whole group), with its output in ``output.log``,
waits for it, enforces the time limit, and writes the exit code to ``exit_code`` last,
atomically: that file existing is what "finished" means. Everything it writes in the run dir
is private to the worker's user; only the ``work`` dir belongs to the job.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import local_limits
from .local_users import JobUser, kill_every_process_of
from .workdirs import write_atomic

KILL_GRACE_S = 10
JOB_DIR = "work"  # the job's own dir in its run dir, the only one it may write


def exit_status(returncode: int) -> int:
    """Shell convention: a job killed by signal N exited with 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def supervise(run_dir: Path, job: argparse.Namespace, ready_fd: int) -> int:
    os.umask(0o077)  # the run dir's files (log, pid, exit code) are the worker's alone
    uid, gid = job.user
    user = JobUser(uid, gid, dynamic=job.dynamic_user)
    limits = local_limits.for_job(f"orchestration-{run_dir.name}", job.memory_mb, job.cpus,
                                  job.time_limit)
    write_atomic(run_dir / "limits", json.dumps(limits.describe()))
    as_user: dict[str, Any] = ({} if user.is_worker else
                               {"user": user.uid, "group": user.gid, "extra_groups": []})
    try:
        with open(run_dir / "output.log", "ab") as out, limits.starting():
            child = subprocess.Popen(
                job.command,
                cwd=run_dir / JOB_DIR,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=limits.in_child,
                **as_user,
            )
    except OSError as exc:
        limits.end()
        os.write(ready_fd, f"cannot start {job.command[0]!r}: {exc.strerror}".encode())
        os.close(ready_fd)
        write_atomic(run_dir / "exit_code", "127")
        return 127
    write_atomic(run_dir / "pid", f"{os.getpid()} {child.pid}")
    os.write(ready_fd, b"ok")
    os.close(ready_fd)
    try:
        returncode = child.wait(timeout=job.time_limit or None)
    except subprocess.TimeoutExpired:
        write_atomic(run_dir / "timed_out", str(job.time_limit))
        os.killpg(child.pid, signal.SIGTERM)
        try:
            returncode = child.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            returncode = child.wait()
    if note := limit_note(limits, returncode):
        write_atomic(run_dir / "limit_note", note)
    limits.end()
    kill_every_process_of(user)
    write_atomic(run_dir / "exit_code", str(exit_status(returncode)))
    return 0


def limit_note(limits: local_limits.Limits, returncode: int) -> str:
    """What the job's end says of its limits, for its final message ("" when nothing)."""
    if limits.memory_exceeded():
        return f"exceeded its memory limit of {limits.memory_mb} MB and was killed"
    if isinstance(limits, local_limits.Rlimits) and returncode != 0:
        if returncode in (-signal.SIGXCPU, -signal.SIGKILL) and limits.time_limit_s:
            return (f"exited with code {exit_status(returncode)}; its cpu time is capped at "
                    f"{limits.cpus} x its time limit (rlimit), it may have used it up")
        if limits.memory_mb > 0:
            return (f"exited with code {exit_status(returncode)}; its address space is capped "
                    f"at {limits.memory_mb} MB (rlimit), an allocation past it fails")
    return ""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="local_runner")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--user", type=lambda v: tuple(int(x) for x in v.split(":")),
                        required=True, help="UID:GID the command runs as")
    parser.add_argument("--dynamic-user", action="store_true",
                        help="the uid is this job's alone: kill all it runs once the job ends")
    parser.add_argument("--time-limit", type=int, default=0)
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--cpus", type=float, default=0)
    parser.add_argument("command", nargs="+")
    return parser.parse_args(argv)


def start(argv: list[str], env: dict[str, str] | None = None) -> str:
    """Fork a detached runner of the job ``argv`` describes (``parse``'s arguments) and wait
    only until its job has started: "ok", or why it did not. ``env``: the job's environment
    (the runner's own, which the job inherits); None keeps this process's."""
    job = parse(argv)
    if len(job.user) != 2 or 0 in job.user:
        return "local_runner: --user must be UID:GID, never root"
    read_fd, write_fd = os.pipe()
    middle = os.fork()
    if middle == 0:  # forks the runner and exits at once: the runner is re-parented to init
        try:
            os.close(read_fd)
            os.setsid()
            if os.fork() == 0:
                _run_detached(job, env, write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(middle, 0)
    with os.fdopen(read_fd, "rb") as ready:
        answer = ready.read().decode(errors="replace")
    return answer or "the runner died before the job started"


def _run_detached(job: argparse.Namespace, env: dict[str, str] | None, ready_fd: int) -> None:
    """The forked runner: nothing of its parent's (descriptors, directory, environment) but
    the job's, then the job. Never returns."""
    code = 1
    try:
        run_dir = job.run_dir.absolute()
        os.chdir(run_dir)  # the worker tells a live runner by it (local.py ``_is_runner``)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, ready_fd)
        os.closerange(ready_fd + 1, 65536)
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        code = supervise(run_dir, job, ready_fd)
    finally:
        os._exit(code)


def main(argv: list[str]) -> int:
    answer = start(argv)
    if answer == "ok":
        return 0
    print(answer, file=sys.stderr)
    return 2 if answer.startswith("local_runner:") else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
