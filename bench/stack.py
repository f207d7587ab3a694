"""The processes a benchmark run starts and stops: gunicorn, the control consumer, the beat,
workers of a pool, and the raw-Celery baseline worker. Each is a subprocess of its own
session, stopped by its pid (and its process group) at the end, never by name."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


class Service:
    """One subprocess with its output in ``<log_dir>/<name>.log``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Service:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        os.killpg(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn(env, log_dir, port: int, workers: int = 2, threads: int = 4) -> Service:
    """The web process as deploy/stack.sh runs it, with the bench's extra baseline view."""
    env = {**env, "DJANGO_SETTINGS_MODULE": "bench.settings"}
    return Service("web", [
        PY, "-m", "gunicorn", "orchestration.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--threads", str(threads), "--access-logfile", "-",
        "--graceful-timeout", "5",
    ], env, log_dir)


def control_consumer(env, log_dir) -> Service:
    return Service("control", [
        PY, "-m", "celery", "-A", "orchestration", "worker", "--queues=control",
        "--pool=threads", "--concurrency=4", "--hostname=control-bench@%h", "--without-gossip",
        "--without-mingle", "--loglevel=INFO",
    ], env, log_dir)


def beat(env, log_dir) -> Service:
    return Service("beat", [
        PY, "-m", "celery", "-A", "orchestration", "beat", "--loglevel=INFO",
        f"--schedule={log_dir / 'beat-schedule'}",
    ], env, log_dir)


def worker(env, log_dir, pool: str) -> Service:
    return Service(f"worker-{pool}", [PY, "-m", "workers", "--pool", pool], env, log_dir)


def baseline_worker(env, log_dir) -> Service:
    """Raw Celery: the same broker, settings, pool kind and concurrency as our workers."""
    from bench.celery_baseline import TASK_QUEUE

    return Service("baseline-worker", [
        PY, "-m", "celery", "-A", "bench.celery_baseline", "worker", f"--queues={TASK_QUEUE}",
        "--pool=threads", "--concurrency=4", "--hostname=baseline-bench@%h",
        "--without-gossip", "--without-mingle", "--loglevel=INFO",
    ], env, log_dir)


def wait_http(url: str, service: Service, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited:\n{service.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{service.tail()}")


def wait_log(service: Service, text: str, timeout: float = 60) -> None:
    """Wait until ``text`` appears in the service's output (a celery worker's 'ready')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited:\n{service.tail()}")
        if service.log_path.exists() and text in service.log_path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{service.name} not ready within {timeout} s:\n{service.tail()}")


def rss_kib(pid: int) -> int:
    """Resident memory of one process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (gunicorn's workers, a celery worker's children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """User plus system CPU time of ``pid`` and its live descendants; with ``reaped``, also
    that of the children they already waited for (a worker's short-lived job starters)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for each in process_tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        if reaped:
            total += int(fields[13]) + int(fields[14])
    return total / ticks


def cpu_by_name(names: tuple[str, ...]) -> float:
    """CPU seconds of every live process whose command name is one of ``names`` (the
    machine's PostgreSQL or RabbitMQ: shared, so other users' load is in it too)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1:stat.rindex(")")] in names:
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / ticks


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
