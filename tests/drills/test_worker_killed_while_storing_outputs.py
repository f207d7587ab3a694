"""Drill 11: SIGKILL the worker after its jobs ended, before and while it stores their outputs.

Each job writes files to ``ORCH_OUTPUT_DIR`` and ends. The worker (``outputs_worker``) is
caught in the middle of storing one job's outputs and killed; the other jobs end while it is
down, their outputs not stored at all. While no worker runs no process may end SUCCEEDED (it
has no outputs yet). Started again, the worker stores them on its next polls: every process
ends SUCCEEDED with every output listed once by the API, each with the bytes the job wrote.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
from pathlib import Path

import pytest

from tests.drills.harness import Expect
from tests.drills.infra import wait_for
from tests.drills.local_backend import LocalBackend
from workers.contract import State

pytestmark = [pytest.mark.drill, pytest.mark.e2e]

# Each job's outputs: a result naming its process, and parts in a nested dir, a name with a
# space and a non-ASCII letter among them.
PARTS = ("data/part 1.bin", "data/part-2.bin", "data/ünï.txt")


def expected_outputs(process_id: str) -> dict[str, bytes]:
    seed = hashlib.sha256(process_id.encode()).digest()
    files = {"result.json": json.dumps({"process": process_id}).encode()}
    for n, path in enumerate(PARTS):
        files[path] = seed * (2000 * (n + 1))  # 64 to 192 KB
    return files


class OutputsBackend(LocalBackend):
    """Local jobs that write outputs, a store the control plane and the worker share, and the
    worker that notes (and can stall) each output it stores."""

    def __init__(self, run_dir: Path):
        super().__init__(run_dir)
        self.storage = run_dir / "storage"
        self.store_ledger = run_dir / "stored"
        self.stall = run_dir / "stall"

    def write_pipelines(self, directory: Path) -> None:
        super().write_pipelines(directory)
        path = directory / "drill-job.yaml"
        definition = json.loads(path.read_text())
        writes = (
            "import hashlib, json, os\n"
            "pid = os.environ['ORCH_PROCESS_ID']\n"
            "out = os.environ['ORCH_OUTPUT_DIR']\n"
            "seed = hashlib.sha256(pid.encode()).digest()\n"
            "os.makedirs(os.path.join(out, 'data'))\n"
            "open(os.path.join(out, 'result.json'), 'w').write(json.dumps({'process': pid}))\n"
            f"for n, name in enumerate({PARTS!r}):\n"
            "    open(os.path.join(out, name), 'wb').write(seed * (2000 * (n + 1)))\n"
        )
        script = definition["run"]["command"][2]
        definition["run"]["command"][2] = script.replace("print('done', flush=True)\n",
                                                         writes + "print('done', flush=True)\n")
        path.write_text(json.dumps(definition, indent=1))

    def worker_env(self) -> dict[str, str]:
        return {**super().worker_env(), "ORCH_STORAGE_URL": f"file://{self.storage}",
                "DRILL_STORE_LEDGER": str(self.store_ledger), "DRILL_STALL": str(self.stall)}

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "tests.drills.outputs_worker", "--pool", self.pool]

    def stored(self) -> list[str]:
        return self.store_ledger.read_text().splitlines() if self.store_ledger.exists() else []

    def ended(self, process_id: str) -> bool:
        return (self.work_root / process_id / "exit_code").exists()


def test_worker_killed_while_storing_outputs(drill_for, tmp_path, record):
    backend = OutputsBackend(tmp_path)
    drill = drill_for(backend)
    backend.stall.touch()
    drill.start()
    quick = drill.submit(3, seconds=4)
    slow = drill.submit(3, seconds=12)
    drill.wait_started(quick + slow)  # all started before the worker stalls in a poll
    wait_for(lambda: backend.stored(), 60, "the worker to store a first output")

    drill.services["worker"].kill(signal.SIGKILL)  # one job's outputs half stored
    # Each poll running in the worker stopped after the first file of an ended job; polls of
    # other batches may have stored that same file again (same key, same bytes).
    half_stored = {key.split("/")[1] for key in backend.stored()}
    stores_before = len(backend.stored())
    backend.stall.unlink()
    wait_for(lambda: all(backend.ended(pid) for pid in quick + slow), 60,
             "every job to end while the worker is down")
    states = drill.states(quick + slow)
    assert State.SUCCEEDED not in set(states.values()), states  # none has its outputs yet

    drill.services["worker"].start()

    expected = {pid: Expect(State.SUCCEEDED, 0) for pid in quick + slow}
    summary = drill.check(expected)
    for pid in quick + slow:
        files = expected_outputs(pid)
        listed = drill.api.get(f"/api/processes/{pid}/outputs/")
        assert sorted(o["path"] for o in listed) == sorted(files), (  # each once
            pid, listed, drill.api.get(f"/api/processes/{pid}/events/"), drill.run_dir)
        for output in listed:
            data = files[output["path"]]
            assert (output["size"], output["sha256"]) == (len(data),
                                                          hashlib.sha256(data).hexdigest())
        objects = sorted(str(p.relative_to(backend.storage / "outputs" / pid))
                         for p in (backend.storage / "outputs" / pid).rglob("*") if p.is_file())
        assert objects == sorted(files)  # no partial write left in the store
    summary["fault"] = (f"killed with 1 of {len(PARTS) + 1} outputs of {len(half_stored)} "
                        f"job(s) stored ({stores_before} puts by concurrent polls); every job "
                        "ended while the worker was down")
    record(summary)
