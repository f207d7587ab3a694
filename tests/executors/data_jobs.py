"""A job that reads a dataset and writes outputs, run on a real target by its executor alone
(no control plane): the test module of each target calls :func:`check_data_round_trip`.

The dataset is put in a file store that ``ORCH_STORAGE_URL`` names, the job spec carries it as
an input (the config's ``input`` field) and an outputs spec; the job reads the file at the path
its config holds, tries to write it and to make it writable (both must fail), and writes
``result.json`` and a nested file with a non-ASCII name to ``ORCH_OUTPUT_DIR``. The poll that
sees it end must carry the stored outputs, already in the store.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from pathlib import Path

from tests.executors.contract import ended, full_log, item_for, poll_until
from workers.contract import JobSpec, State
from workers.executors.base import Executor
from workers.storage import FileStorage

DATASET = b"one fish two fish\nred fish blue fish\n" * 1000

JOB = r"""
import hashlib, json, os
config = json.load(open(os.environ["ORCH_CONFIG_FILE"]))
path = config["input"]
data = open(path, "rb").read()
def refused(act):
    try:
        act()
    except OSError:
        return True
    return False
wrote = not refused(lambda: open(path, "ab").write(b"tampered"))
chmodded = not refused(lambda: os.chmod(path, 0o666))
out = os.environ["ORCH_OUTPUT_DIR"]
os.makedirs(os.path.join(out, "nested dir"), exist_ok=True)
with open(os.path.join(out, "result.json"), "w") as f:
    json.dump({"sha256": hashlib.sha256(data).hexdigest(), "path": path,
               "input_dir": os.environ["ORCH_INPUT_DIR"], "wrote": wrote,
               "chmodded": chmodded, "mode": oct(os.stat(path).st_mode & 0o777)}, f)
with open(os.path.join(out, "nested dir", "naïve.txt"), "w") as f:
    f.write("é")
print("read", len(data), "bytes")
"""


def data_spec(make_spec, python: str, key: str, process_id: str | None = None,
              **fields) -> JobSpec:
    spec: JobSpec = make_spec("data", command=[python, "-c", JOB], **fields)
    if process_id:
        spec.process_id = process_id
    spec.config = {"input": "dataset-1", "other": 2}
    spec.inputs = [{"pointer": "/input", "name": "input.txt", "dataset": "dataset-1",
                    "key": key, "size": len(DATASET),
                    "sha256": hashlib.sha256(DATASET).hexdigest(), "url": ""}]
    spec.outputs = {"prefix": f"outputs/{spec.process_id}/", "max_bytes": 1 << 30,
                    "upload_url": ""}
    return spec


def put_dataset(store_root: Path, monkeypatch) -> tuple[FileStorage, str]:
    """A file store at ``store_root`` named by ``ORCH_STORAGE_URL``, holding the dataset."""
    store = FileStorage(store_root)
    key = f"datasets/{uuid.uuid4()}"
    store.put(key, io.BytesIO(DATASET))
    monkeypatch.setenv("ORCH_STORAGE_URL", f"file://{store_root}")
    return store, key


def check_data_round_trip(executor: Executor, spec: JobSpec, store: FileStorage,
                          input_dir: str, timeout: float = 90) -> dict:
    """Run ``spec`` and check what the user gets; returns the job's ``result.json``."""
    submission = executor.submit(spec)
    events = poll_until(executor, item_for(spec, submission.handle), ended, timeout=timeout)
    last = events[-1]
    assert last.state == State.SUCCEEDED, (last, full_log(events))
    prefix = f"outputs/{spec.process_id}/"
    assert sorted(o["path"] for o in last.outputs or []) == ["nested dir/naïve.txt",
                                                             "result.json"]
    for output in last.outputs or []:
        assert output["key"] == prefix + output["path"]
        data = store.open(output["key"]).read()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (output["size"],
                                                                 output["sha256"])
    result = json.loads(store.open(prefix + "result.json").read())
    assert result["sha256"] == hashlib.sha256(DATASET).hexdigest()
    assert result["path"] == f"{input_dir}/input.txt"
    assert result["input_dir"] == input_dir
    assert not result["wrote"], result
    assert not result["chmodded"], result
    assert store.open(prefix + "nested dir/naïve.txt").read() == "é".encode()
    assert store.open(spec.inputs[0]["key"]).read() == DATASET  # the store's copy unharmed
    # A poll delivered again finds the same outputs, stored once under the same keys.
    (again,) = executor.poll([item_for(spec, submission.handle)])
    assert again.outputs == last.outputs
    executor.release(submission.handle)
    # A poll built before the end was applied finds the output dir released: it reports no
    # end again (an end with no outputs would read as a job that kept nothing).
    (late,) = executor.poll([item_for(spec, submission.handle)])
    assert late.state is None
    assert late.outputs is None
    return result
