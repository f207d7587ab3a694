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

One job per module: ``engine`` (the engine, its errors, retries and Podman quirks),
``container_spec`` (the container a job spec becomes: name, labels, mounts, environment),
``confinement`` (its user and what keeps it from the host), ``run_dirs`` (its files on the
host), ``states`` (the engine's states as ours, exit codes, time limits), ``reaper`` (orphan
containers) and ``executor`` (:class:`DockerExecutor`, which drives them).
"""

from __future__ import annotations

from .executor import DockerExecutor

__all__ = ["DockerExecutor"]
