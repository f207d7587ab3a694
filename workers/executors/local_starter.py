"""The local job starter: one small process per worker process that forks a runner for each
local job (``local_runner.start``), so a job costs a fork and not a Python interpreter's start.

The worker starts it on its first local job (``python -m ...local_starter``, with no more
environment than ``PATH`` and the like) and talks to it over its stdin and stdout, one JSON
line each way per job: the runner's arguments and the job's environment in, "ok" or why the
job did not start out. The starter is single-threaded (a fork of it is safe, unlike a fork
of a worker running threads) and imports only what a runner needs. It ends when the worker
closes its stdin; the runners it forked are detached and live on.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, cast

from .base import ExecutorError

log = logging.getLogger(__name__)

# How long the starter may take to answer for one job (its runner starting the command).
ANSWER_TIMEOUT_S = 30
# What the starter's own environment keeps of the worker's (jobs get theirs per request).
STARTER_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


class Starter:
    """The worker's side: one starter process, asked by one thread at a time."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def start_job(self, argv: list[str], env: dict[str, str]) -> str:
        """Start the job ``argv`` describes (``local_runner.parse``'s arguments) with ``env``:
        "ok", or the reason it did not start. Raises ExecutorError (transient) when the
        starter itself failed: whether the job started is then for the caller to find out."""
        line = json.dumps({"argv": argv, "env": env}) + "\n"
        with self._lock:
            requests, answers = self._pipes()
            try:
                requests.write(line.encode())
                requests.flush()
                ready, _, _ = select.select([answers], [], [], ANSWER_TIMEOUT_S)
                answer = answers.readline() if ready else b""
            except OSError as exc:
                self._end()
                raise ExecutorError(f"the local job starter failed: {exc}") from exc
            if not answer:
                self._end()
                raise ExecutorError("the local job starter did not answer")
        return str(json.loads(answer).get("answer", ""))

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        """The running starter's stdin and stdout, started first if need be."""
        if self._process is None or self._process.poll() is not None:
            env = {key: os.environ[key] for key in STARTER_ENV if key in os.environ}
            env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env=env, close_fds=True, start_new_session=True)
            log.info("local job starter running (pid %s)", self._process.pid)
        return cast(IO[bytes], self._process.stdin), cast(IO[bytes], self._process.stdout)

    def _end(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_starter = Starter()


def start_job(argv: list[str], env: dict[str, str]) -> str:
    """Start a local job through this worker process's starter (see ``Starter.start_job``)."""
    return _starter.start_job(argv, env)


def serve() -> int:
    """The starter's loop: one request line in, one answer line out, until stdin closes."""
    from .local_runner import start

    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            answer = start(list(request["argv"]), dict(request["env"]))
        except (ValueError, KeyError, TypeError, OSError, SystemExit) as exc:
            answer = f"the local job starter could not read its request: {exc!r}"
        sys.stdout.write(json.dumps({"answer": answer}) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(serve())
