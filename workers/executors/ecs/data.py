"""Datasets in and outputs out of an ECS task, through the S3 store (``ORCH_STORAGE_URL`` is
``s3://bucket/prefix``): a task has no file system the worker can reach.

A job that reads datasets or keeps outputs gets a task definition with two task-local volumes
and two more containers, both running the pool's ``stage_image`` (an image with this worker
package, as ``deploy/Dockerfile`` builds) and ``python -m orchestration_worker.ecs_stage``:

- ``orch-stage-in`` (not essential) copies each dataset from the bucket into the volume the
  job mounts read-only at ``/orch/inputs``, checked against its size and SHA-256, and makes
  ``/orch/outputs`` writable for the job; the job's container starts only once it ends with
  SUCCESS (``dependsOn``);
- ``orch-stage-out`` (the essential one) starts once the job's container has ended
  (``COMPLETE``) and puts every file of ``/orch/outputs`` under the run's prefix in the bucket.

The job's container is then not essential, so its end does not stop the task before its
outputs are copied; its exit code still decides the run. What the stage containers copy is
data in their environment (``ORCH_INPUTS``, ``ORCH_OUTPUT_PREFIX``), given per run in the
overrides: no shell line is ever written. When the poll sees the task stopped, the worker
lists the objects under the prefix, hashes each (its own reading, not the task's word), keeps
those within ``max_bytes`` and removes the rest, named in the message.
"""

from __future__ import annotations

import json
from typing import Any

from ... import outputs, staging
from ...contract import JobSpec
from ...data_contract import OutputsSpec, StoredOutput
from ...storage.base import HashingReader
from ..base import ExecutorError
from .pool import EcsPool

STAGE_IN, STAGE_OUT = "orch-stage-in", "orch-stage-out"
INPUTS_VOLUME, OUTPUTS_VOLUME = "orch-inputs", "orch-outputs"
INPUTS_PATH, OUTPUTS_PATH = "/orch/inputs", "/orch/outputs"
STAGE_COMMAND = ["python", "-m", "orchestration_worker.ecs_stage"]
STAGE_MEMORY_MB = 64


def uses_data(spec: JobSpec) -> bool:
    return bool(spec.inputs or spec.outputs)


def bucket_store():
    """The worker's store, which must be a bucket: the task reaches nothing else."""
    from ...storage.s3 import S3Storage

    store = staging.worker_storage()
    if not isinstance(store, S3Storage):
        raise ExecutorError("the ECS target stages datasets and outputs through S3: "
                            "ORCH_STORAGE_URL must be s3://bucket/prefix", permanent=True)
    return store


def stage_image(pool: EcsPool) -> str:
    """The pool's ``stage_image``: refused for good when it names none."""
    if not pool.stage_image:
        raise ExecutorError(f"pool {pool.name}: settings.stage_image must name the image that "
                            "copies datasets and outputs between S3 and the task (an image "
                            "with the worker package)", permanent=True)
    return pool.stage_image


def definition_parts(pool: EcsPool, main: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """The task definition's containers (``main`` first, with its mounts and dependency) and
    volumes, for a job that uses data."""
    image = stage_image(pool)
    logs = main["logConfiguration"]
    main = {**main, "essential": False,
            "mountPoints": [
                {"sourceVolume": INPUTS_VOLUME, "containerPath": INPUTS_PATH, "readOnly": True},
                {"sourceVolume": OUTPUTS_VOLUME, "containerPath": OUTPUTS_PATH,
                 "readOnly": False}],
            "dependsOn": [{"containerName": STAGE_IN, "condition": "SUCCESS"}]}
    both = [{"sourceVolume": INPUTS_VOLUME, "containerPath": INPUTS_PATH, "readOnly": False},
            {"sourceVolume": OUTPUTS_VOLUME, "containerPath": OUTPUTS_PATH, "readOnly": False}]
    # A small reservation each, no hard limit: a Fargate task is sized with room for both
    # beside the job's own limit (``task_definitions.sizes``).
    size = {"memoryReservation": STAGE_MEMORY_MB}
    stage_in = {"name": STAGE_IN, "image": image, "essential": False,
                "command": [*STAGE_COMMAND, "in"], "mountPoints": both,
                "logConfiguration": logs, **size}
    stage_out = {"name": STAGE_OUT, "image": image, "essential": True,
                 "command": [*STAGE_COMMAND, "out"], "mountPoints": both[1:],
                 "dependsOn": [{"containerName": main["name"], "condition": "COMPLETE"}],
                 "logConfiguration": logs, **size}
    return [main, stage_in, stage_out], [{"name": INPUTS_VOLUME}, {"name": OUTPUTS_VOLUME}]


def run_overrides(spec: JobSpec) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """For one run: the job's own extra environment (its config with the staged paths, where
    its dirs are) and the stage containers' overrides (what to copy, where)."""
    store = bucket_store()
    store_url = f"s3://{store.bucket}/{store.prefix}".rstrip("/")
    job_env = {"ORCH_CONFIG": json.dumps(staging.config_for_job(spec, INPUTS_PATH),
                                         sort_keys=True)}
    stage_in = {"ORCH_STORAGE_URL": store_url, "ORCH_INPUTS": json.dumps(
        [{"name": i.name, "key": i.key, "size": i.size, "sha256": i.sha256, "dataset": i.dataset,
          "pointer": i.pointer} for i in staging.inputs_of(spec)])}
    stage_out = {"ORCH_STORAGE_URL": store_url}
    if spec.inputs:
        job_env["ORCH_INPUT_DIR"] = INPUTS_PATH
    if spec.outputs:
        spec_out = outputs.outputs_spec(spec.outputs) or OutputsSpec("", 0)
        job_env["ORCH_OUTPUT_DIR"] = OUTPUTS_PATH
        stage_out.update(ORCH_OUTPUT_PREFIX=spec_out.prefix,
                         ORCH_OUTPUT_MAX_BYTES=str(spec_out.max_bytes))
    return job_env, [
        {"name": name, "environment": [{"name": k, "value": v} for k, v in env.items()]}
        for name, env in ((STAGE_IN, stage_in), (STAGE_OUT, stage_out))]


def outputs_spec_of(task: dict[str, Any]) -> OutputsSpec | None:
    """The outputs spec a task was started with (its stage-out container's overrides)."""
    for container in (task.get("overrides") or {}).get("containerOverrides") or []:
        if container.get("name") == STAGE_OUT:
            env = {e["name"]: e["value"] for e in container.get("environment") or []}
            if "ORCH_OUTPUT_PREFIX" in env:
                return OutputsSpec(prefix=env["ORCH_OUTPUT_PREFIX"],
                                   max_bytes=int(env.get("ORCH_OUTPUT_MAX_BYTES") or 0))
    return None


def stage_out_failure(task: dict[str, Any]) -> str | None:
    """Why the stage-out container did not copy the outputs, when ECS says it failed."""
    for container in task.get("containers") or []:
        if container.get("name") == STAGE_OUT:
            code = container.get("exitCode")
            if code not in (0, None):
                return (f"the {STAGE_OUT} container exited with code {code}"
                        + (f": {container['reason']}" if container.get("reason") else ""))
    return None


def left_out_key(prefix: str) -> str:
    """Where the stage-out container notes the files it left out (beside the prefix)."""
    return prefix.rstrip("/") + ".left-out.json"


def collect(spec: OutputsSpec) -> outputs.StoredOutputs:
    """The outputs the task put under ``spec.prefix``, each read back and hashed; those past
    ``max_bytes`` (in the order of their paths) removed and named."""
    store = bucket_store()
    result, total = outputs.StoredOutputs(), 0
    listed = []
    paginator = store.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store.bucket, Prefix=store.object_key(
            spec.prefix.rstrip("/")) + "/"):
        listed += [(o["Key"], int(o["Size"])) for o in page.get("Contents") or []]
    base = store.object_key(spec.prefix.rstrip("/")) + "/"
    for name, size in sorted(listed):
        path, key = name[len(base):], spec.prefix + name[len(base):]
        if total + size > spec.max_bytes:
            store.delete(key)
            result.left_out.append((path, f"{size} bytes, over the cap of {spec.max_bytes} "
                                          "bytes in all"))
            continue
        with store.open(key) as body:
            reader = HashingReader(body)
            while reader.read(1 << 20):
                pass
        total += reader.size
        result.outputs.append(StoredOutput(path=path, size=reader.size, sha256=reader.sha256,
                                           key=key).__dict__)
    note = left_out_key(spec.prefix)
    if store.stat(note) is not None:
        with store.open(note) as body:
            result.left_out[:0] = [(str(path), str(why)) for path, why in json.load(body)]
    return result
