"""The processes a benchmark run starts and stops: the web server, the control consumer, the
beat and workers of a pool (``testbed.parts``: the command lines deploy/stack.sh uses), and the
raw-Celery baseline worker. Each is a subprocess of its own session, stopped by its pid (and
its process group) at the end, never by name."""

from __future__ import annotations

from pathlib import Path

from testbed import parts
from testbed.services import Service


def web(env: dict[str, str], log_dir: Path, port: int) -> Service:
    """The web server as deploy/stack.sh runs it, with the bench's extra baseline view."""
    return parts.web({**env, "DJANGO_SETTINGS_MODULE": "bench.settings"}, log_dir, port)


def control_consumer(env: dict[str, str], log_dir: Path) -> Service:
    # A node name of its own: a stack of deploy/stack.sh may run on this host too.
    return parts.control_consumer(env, log_dir, hostname="control-bench@%h")


def beat(env: dict[str, str], log_dir: Path) -> Service:
    return parts.beat(env, log_dir)


def worker(env: dict[str, str], log_dir: Path, pool: str) -> Service:
    return parts.worker(env, log_dir, pool)


def baseline_worker(env: dict[str, str], log_dir: Path) -> Service:
    """Raw Celery: the same broker, settings, pool kind and concurrency as our workers."""
    from bench.celery_baseline import TASK_QUEUE

    return Service("baseline-worker", [
        parts.PY, "-m", "celery", "-A", "bench.celery_baseline", "worker", f"--queues={TASK_QUEUE}",
        "--pool=threads", "--concurrency=4", "--hostname=baseline-bench@%h",
        "--without-gossip", "--without-mingle", "--loglevel=INFO",
    ], env, log_dir, ready=parts.CELERY_READY)
