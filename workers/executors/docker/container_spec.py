"""The container a job spec becomes: its name and labels, what it mounts from the run dir, its
environment, command, limits and confinement, as the engine's create call takes them.

Each run's container is named ``orch-<process id>`` and labelled ``orchestration.process`` and
``orchestration.pool``: submission looks the label up before it creates anything, and one list
call filtered on the pool label answers a whole poll. The job sees its config read-only at
``/orch/config.json`` (``ORCH_CONFIG_FILE``), its script at ``/orch/script`` and its work dir
read-write at ``/orch/work`` (``ORCH_WORK_DIR``, the working dir).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker

from ...contract import JobSpec
from .confinement import bind_mode, host_options

LABEL_PROCESS = "orchestration.process"
LABEL_POOL = "orchestration.pool"
LABEL_PIPELINE = "orchestration.pipeline"
LABEL_MEMORY = "orchestration.memory_mb"
LABEL_TIME_LIMIT = "orchestration.time_limit_s"

CONFIG_PATH = "/orch/config.json"
SCRIPT_PATH = "/orch/script"
WORK_PATH = "/orch/work"


def create_request(spec: JobSpec, pool: str, settings: dict[str, Any], run_dir: Path,
                   user: str, *, is_podman: bool, api_version: str) -> dict[str, Any]:
    """The arguments of the engine's create call for ``spec``, run as ``user`` (``uid:gid``)
    with ``run_dir`` prepared. Pool setting read here: ``network`` (engine default)."""
    ro, rw = bind_mode("ro", is_podman), bind_mode("rw", is_podman)
    binds = {
        str(run_dir / "config.json"): {"bind": CONFIG_PATH, "mode": ro},
        str(run_dir / "work"): {"bind": WORK_PATH, "mode": rw},
    }
    if spec.script:
        binds[str(run_dir / "script")] = {"bind": SCRIPT_PATH, "mode": ro}
    res = spec.resources
    memory = f"{res.memory_mb}m" if res.memory_mb else None
    host_config = docker.types.HostConfig(
        version=api_version,
        binds=binds,
        init=True,  # an init passes SIGTERM on: a stop takes a moment, not the grace period
        **host_options(),
        nano_cpus=int(res.cpus * 1e9) if res.cpus else None,
        mem_limit=memory,
        memswap_limit=memory,  # no swap on top: over its memory a job is killed
        device_requests=(
            [docker.types.DeviceRequest(count=res.gpus, capabilities=[["gpu"]])]
            if res.gpus else None
        ),
        network_mode=settings.get("network") or None,
    )
    env = {"HOME": "/tmp", **spec.env}  # noqa: S108 - its tmpfs: the root fs is read-only
    env.update(
        ORCH_PROCESS_ID=spec.process_id,
        ORCH_CONFIG_FILE=CONFIG_PATH,
        ORCH_WORK_DIR=WORK_PATH,
    )
    labels = {
        LABEL_PROCESS: spec.process_id,
        LABEL_POOL: pool,
        LABEL_PIPELINE: spec.pipeline,
        LABEL_MEMORY: str(res.memory_mb or ""),
        LABEL_TIME_LIMIT: str(res.time_limit_s or ""),
    }
    command = ["/bin/sh", SCRIPT_PATH] if spec.script else (list(spec.command) or None)
    return dict(
        image=spec.image, command=command, name=spec.job_name, labels=labels,
        environment=env, working_dir=WORK_PATH, host_config=host_config, user=user,
        detach=True, use_config_proxy=False,
    )
