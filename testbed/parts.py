"""The product's parts as :class:`~testbed.services.Service` objects, started with the command
lines deploy/stack.sh uses: the control plane's through ``python -m orchestration``, a pool's
worker through ``python -m workers``. The caller gives each its environment (database, broker
URL of its role, settings) and the directory of its log file."""

from __future__ import annotations

import sys
from pathlib import Path

from testbed.services import Service, http_answers, log_shows

PY = sys.executable
CELERY_READY = log_shows(" ready.")  # a Celery worker consumes from here on


def web(env: dict[str, str], log_dir: Path, port: int, *, name: str = "web",
        workers: int | None = None, threads: int | None = None, timeout: int | None = None,
        access_log: Path | None = None, limit_request_line: int | None = None) -> Service:
    """The web server on 127.0.0.1:``port``; ready once /api/health/ answers (200 or 503).
    Options left out take ``python -m orchestration web``'s defaults."""
    options = {"--workers": workers, "--threads": threads, "--timeout": timeout,
               "--access-log": access_log, "--limit-request-line": limit_request_line}
    argv = [PY, "-m", "orchestration", "web", "--port", str(port)]
    argv += [word for flag, value in options.items() if value is not None
             for word in (flag, str(value))]
    return Service(name, argv, env, log_dir,
                   ready=http_answers(f"http://127.0.0.1:{port}/api/health/"))


def control_consumer(env: dict[str, str], log_dir: Path, *, name: str = "control",
                     hostname: str | None = None) -> Service:
    """The control consumer; ``hostname``: its Celery node name, when two share a host."""
    argv = [PY, "-m", "orchestration", "control"]
    argv += ["--hostname", hostname] if hostname else []
    return Service(name, argv, env, log_dir, ready=CELERY_READY)


def beat(env: dict[str, str], log_dir: Path, *, name: str = "beat") -> Service:
    """The beat, its schedule file beside its log (not the checkout's var/)."""
    return Service(name, [PY, "-m", "orchestration", "beat",
                          f"--schedule={Path(log_dir) / 'beat-schedule'}"],
                   env, log_dir, ready=log_shows("beat: Starting..."))


def worker_argv(pool: str, target: str | None = None) -> list[str]:
    """The command line of a worker of ``pool`` (its target read from the pool's name when
    not given)."""
    return [PY, "-m", "workers", "--pool", pool, *(["--target", target] if target else [])]


def worker(env: dict[str, str], log_dir: Path, pool: str = "local", *, name: str | None = None,
           target: str | None = None) -> Service:
    """A worker of ``pool``; its log is ``worker-<pool>.log`` unless ``name`` says otherwise."""
    return Service(name or f"worker-{pool}", worker_argv(pool, target), env, log_dir,
                   ready=CELERY_READY)
