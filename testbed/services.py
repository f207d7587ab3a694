"""One subprocess a test, a drill or the benchmark owns, and the waits around it.

A :class:`Service` runs from the checkout's root with the environment it is given, writes its
output to ``<log_dir>/<name>.log`` and leads a process group of its own, so a stop or a kill
reaches the children it forked (gunicorn's workers, a job starter) and nothing else: it is
signalled by its pid, never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]  # the checkout: every service runs from here


class WaitFailed(AssertionError):
    """A wait ran out of time, or the process it waited on exited: in a test or a drill, an
    assertion that failed."""


def wait_until(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition",
               interval: float = 0.2) -> Any:
    """Call ``predicate`` every ``interval`` s until it returns something true, and return
    that; raise :class:`WaitFailed` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise WaitFailed(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Our servers listen on this machine: a proxy set in the environment must not be asked.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str, timeout: float = 5) -> int | None:
    """The status of a GET of ``url``, or None while nothing answers there."""
    try:
        with _DIRECT.open(url, timeout=timeout) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


Probe = Callable[["Service"], bool]


def log_shows(text: str) -> Probe:
    """Ready once ``text`` is in the service's output (a Celery worker's `` ready.``)."""
    return lambda service: text in service.output()


def http_answers(url: str, statuses: tuple[int, ...] = (200, 503)) -> Probe:
    """Ready once a GET of ``url`` answers one of ``statuses`` (a 503 from /api/health/ is a
    server that serves while a part it reports on is not up yet)."""
    return lambda service: http_status(url) in statuses


class Service:
    """One subprocess with its output in ``<log_dir>/<name>.log``; ``ready`` tells when it
    serves (:meth:`wait_ready`)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path,
                 ready: Probe | None = None):
        self.name, self.argv, self.env, self.ready = name, argv, env, ready
        self.log_path = Path(log_dir) / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Service:
        with open(self.log_path, "ab") as log:  # the child holds its own copy
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal this service's process and its group (the children it forked), and wait
        for it to exit."""
        if self.alive():
            os.killpg(self.pid, sig)
            self.proc.wait(timeout=30)

    @contextmanager
    def frozen(self, settle: float = 0.5) -> Iterator[None]:
        """Hold this service and its children still (SIGSTOP) for the block, then let them go on
        (SIGCONT). ``settle`` s pass before the block runs, so an answer to a request sent just
        before the stop has arrived and cannot describe what the block changes."""
        os.killpg(self.pid, signal.SIGSTOP)
        try:
            time.sleep(settle)
            yield
        finally:
            os.killpg(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to the group; SIGKILL when it has not exited after ``timeout`` s."""
        if self.alive():
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> Service:
        self.stop()
        return self.start()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 60,
                 what: str = "a condition") -> Any:
        """Until ``predicate()`` is true, while this service lives, and return its value;
        :class:`WaitFailed` with the end of its output when it exits first or time runs out."""
        try:
            value = wait_until(lambda: predicate() or not self.alive(), timeout, what,
                               interval=0.1)
        except WaitFailed as failed:
            raise WaitFailed(f"{failed}; {self.name}'s output ends:\n{self.tail()}") from None
        if not self.alive():
            raise WaitFailed(f"{self.name} exited ({self.proc.returncode}) while waiting for "
                             f"{what}:\n{self.tail()}")
        return value

    def wait_ready(self, timeout: float = 60) -> Service:
        """Until the service serves (its ``ready`` probe); see :meth:`wait_for`."""
        if self.ready is None:
            raise TypeError(f"{self.name} has no readiness probe")
        self.wait_for(lambda: self.ready(self), timeout, f"{self.name} to be ready")
        return self
