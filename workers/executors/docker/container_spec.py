"""The container a job spec becomes: its name and labels, what it mounts from the run dir, its
environment, command, limits and confinement, as the engine's create call takes them.

Each run's container is named ``orch-<process id>`` and labelled ``orchestration.process`` and
``orchestration.pool``: submission looks the label up before it creates anything, and one list
call filtered on the pool label answers a whole poll. The job sees its config read-only at
``/orch/config.json`` (``ORCH_CONFIG_FILE``), its script at ``/orch/script``, its work dir
read-write at ``/orch/work`` (``ORCH_WORK_DIR``, the working dir), its datasets read-only in
``/orch/inputs`` (``ORCH_INPUT_DIR``) and its output dir read-write at ``/orch/outputs``
(``ORCH_OUTPUT_DIR``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker

from ...contract import JobSpec
from .confinement import bind_mode, host_options
from .run_dirs import INPUTS_DIR, INPUTS_PATH, OUTPUTS_DIR, OUTPUTS_PATH

LABEL_PROCESS = "orchestration.process"
LABEL_POOL = "orchestration.pool"
LABEL_PIPELINE = "orchestration.pipeline"
LABEL_MEMORY = "orchestration.memory_mb"
LABEL_TIME_LIMIT = "orchestration.time_limit_s"
# Which attempt of its process the container runs (none on containers older than attempts: 1).
LABEL_ATTEMPT = "orchestration.attempt"

CONFIG_PATH = "/orch/config.json"
SCRIPT_PATH = "/orch/script"
WORK_PATH = "/orch/work"


def attempt_of(labels: dict[str, str] | None) -> int:
    """The attempt a container's labels name (1 when they name none)."""
    value = (labels or {}).get(LABEL_ATTEMPT) or "1"
    return int(value) if value.isdigit() else 1


def gpu_requests(spec: JobSpec) -> list[docker.types.DeviceRequest] | None:
    """The GPUs the container gets: exactly the devices admission gave the job on a pool
    that counts them, else as many as it asks, of the engine's choosing."""
    if spec.gpu_devices:
        return [docker.types.DeviceRequest(device_ids=list(spec.gpu_devices),
                                           capabilities=[["gpu"]])]
    if spec.resources.gpus:
        return [docker.types.DeviceRequest(count=spec.resources.gpus, capabilities=[["gpu"]])]
    return None


def gpu_env(spec: JobSpec) -> dict[str, str]:
    """What the NVIDIA runtime reads (a host whose default runtime is nvidia gives every
    container the devices of NVIDIA_VISIBLE_DEVICES, and CUDA images say ``all``): the job's
    own devices, or none for a job that asks none. Set after the job's env, so no env value
    widens it. ``ORCH_GPU_DEVICES`` tells the job which devices it holds."""
    if spec.gpu_devices:
        devices = ",".join(spec.gpu_devices)
        return {"NVIDIA_VISIBLE_DEVICES": devices, "ORCH_GPU_DEVICES": devices}
    if not spec.resources.gpus:
        return {"NVIDIA_VISIBLE_DEVICES": "void"}
    return {}


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
    if spec.inputs:
        binds[str(run_dir / INPUTS_DIR)] = {"bind": INPUTS_PATH, "mode": ro}
    if spec.outputs:
        binds[str(run_dir / OUTPUTS_DIR)] = {"bind": OUTPUTS_PATH, "mode": rw}
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
        device_requests=gpu_requests(spec),
        network_mode=settings.get("network") or None,
    )
    env = {"HOME": "/tmp", **spec.env}  # noqa: S108 - its tmpfs: the root fs is read-only
    env.update(
        ORCH_PROCESS_ID=spec.process_id,
        ORCH_CONFIG_FILE=CONFIG_PATH,
        ORCH_WORK_DIR=WORK_PATH,
        **gpu_env(spec),
    )
    if spec.inputs:
        env["ORCH_INPUT_DIR"] = INPUTS_PATH
    if spec.outputs:
        env["ORCH_OUTPUT_DIR"] = OUTPUTS_PATH
    labels = {
        LABEL_PROCESS: spec.process_id,
        LABEL_POOL: pool,
        LABEL_PIPELINE: spec.pipeline,
        LABEL_MEMORY: str(res.memory_mb or ""),
        LABEL_TIME_LIMIT: str(res.time_limit_s or ""),
        LABEL_ATTEMPT: str(spec.attempt),
    }
    command = ["/bin/sh", SCRIPT_PATH] if spec.script else (list(spec.command) or None)
    return dict(
        image=spec.image, command=command, name=spec.job_name, labels=labels,
        environment=env, working_dir=WORK_PATH, host_config=host_config, user=user,
        detach=True, use_config_proxy=False,
    )
