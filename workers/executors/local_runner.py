"""Runs one local job, detached from the worker that started it.

    python -m orchestration_worker.executors.local_runner WORK_DIR TIME_LIMIT_S -- COMMAND...

The first process forks and waits only until the job has started (or failed to), then exits,
so the worker is never the parent of a long job and no worker slot is held while it runs. The
forked runner starts the command in its own process group (cancel signals the whole group),
with its output in ``output.log``, waits for it, enforces the time limit, and writes the exit
code to ``exit_code`` last, atomically: that file existing is what "finished" means.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

KILL_GRACE_S = 10


def write_atomic(path: Path, text: str) -> None:
    """Readers see the old text or the new, never a part. The temporary file is the writer's
    own: two deliveries of one job spec may write the same handle at once."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def exit_status(returncode: int) -> int:
    """Shell convention: a job killed by signal N exited with 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def supervise(work_dir: Path, time_limit: int, command: list[str], ready_fd: int) -> int:
    try:
        with open(work_dir / "output.log", "ab") as out:
            child = subprocess.Popen(
                command,
                cwd=work_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
    except OSError as exc:
        os.write(ready_fd, f"cannot start {command[0]!r}: {exc.strerror}".encode())
        os.close(ready_fd)
        write_atomic(work_dir / "exit_code", "127")
        return 127
    write_atomic(work_dir / "pid", f"{os.getpid()} {child.pid}")
    os.write(ready_fd, b"ok")
    os.close(ready_fd)
    try:
        returncode = child.wait(timeout=time_limit or None)
    except subprocess.TimeoutExpired:
        write_atomic(work_dir / "timed_out", str(time_limit))
        os.killpg(child.pid, signal.SIGTERM)
        try:
            returncode = child.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            returncode = child.wait()
    write_atomic(work_dir / "exit_code", str(exit_status(returncode)))
    return 0


def main(argv: list[str]) -> int:
    work_dir, time_limit, sep, *command = argv
    if sep != "--" or not command:
        print("usage: local_runner WORK_DIR TIME_LIMIT_S -- COMMAND...", file=sys.stderr)
        return 2
    read_fd, write_fd = os.pipe()
    if os.fork() == 0:  # the runner: outlives the worker, re-parented to init
        os.close(read_fd)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        code = supervise(Path(work_dir), int(time_limit), command, write_fd)
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as ready:
        answer = ready.read().decode(errors="replace")
    if answer == "ok":
        return 0
    print(answer or "the runner died before the job started", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
