"""The stage containers of an ECS task that uses data (see ``executors/ecs/data.py``):

    python -m orchestration_worker.ecs_stage in    # datasets: the bucket -> /orch/inputs
    python -m orchestration_worker.ecs_stage out   # outputs: /orch/outputs -> the bucket

Everything they copy is read from their environment as data: ``ORCH_STORAGE_URL`` (the
bucket), ``ORCH_INPUTS`` (a JSON list of the datasets: name, key, size, sha256) and
``ORCH_OUTPUT_PREFIX`` / ``ORCH_OUTPUT_MAX_BYTES``. The task's role gives them the bucket.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

from .contract import JobSpec
from .data_contract import OutputsSpec
from .executors.ecs.data import left_out_key
from .outputs import OutputsError, store_outputs
from .staging import DIR_MODE, inputs_of, stage_files
from .storage import storage_from_url

INPUTS_DIR, OUTPUTS_DIR = Path("/orch/inputs"), Path("/orch/outputs")


def stage_in(inputs_dir: Path = INPUTS_DIR, outputs_dir: Path = OUTPUTS_DIR) -> None:
    store = storage_from_url(os.environ["ORCH_STORAGE_URL"])
    spec = JobSpec(process_id="-", pipeline="-", version=0, target="ecs", pool="-",
                   inputs=json.loads(os.environ.get("ORCH_INPUTS") or "[]"))
    stage_files(inputs_of(spec), inputs_dir, store)
    os.chmod(inputs_dir, DIR_MODE)
    # The task's own volume: the job's user, whoever the image makes it, writes its outputs.
    os.chmod(outputs_dir, 0o1777)  # noqa: S103 - a volume of this task alone, like /tmp


def stage_out(outputs_dir: Path = OUTPUTS_DIR) -> int:
    store = storage_from_url(os.environ["ORCH_STORAGE_URL"])
    spec = OutputsSpec(prefix=os.environ["ORCH_OUTPUT_PREFIX"],
                       max_bytes=int(os.environ.get("ORCH_OUTPUT_MAX_BYTES") or 1 << 30))
    stored = store_outputs(outputs_dir, spec, store, owner_only=False)
    print(f"stored {len(stored.outputs)} outputs under {spec.prefix}")
    if stored.left_out:  # for the worker, which names them in the process's message
        print(stored.message)
        store.put(left_out_key(spec.prefix), io.BytesIO(json.dumps(stored.left_out).encode()))
    return 0


def main(argv: list[str]) -> int:
    if argv == ["in"]:
        stage_in()
        return 0
    if argv == ["out"]:
        try:
            return stage_out()
        except OutputsError as exc:
            print(f"outputs not stored: {exc}", file=sys.stderr)
            return 1
    print("usage: python -m orchestration_worker.ecs_stage in|out", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
