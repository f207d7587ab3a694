"""Datasets staged into a job (workers/staging.py): read-only files in a read-only dir, from a
file store (a hard link, never a symlink), through a signed URL (a tiny HTTP server of the
test's own) checked against the dataset's size and SHA-256, and the config the job reads
with each dataset field holding the staged path."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import stat
import threading
import uuid
from typing import ClassVar

import pytest

from workers.contract import JobSpec
from workers.executors.base import ExecutorError
from workers.staging import config_for_job, remove_tree, stage_inputs
from workers.storage import FileStorage

TEXT = "the quick brown fox\nne jumps élan 🦊\n".encode()


def spec_with(inputs: list[dict], config: dict | None = None) -> JobSpec:
    return JobSpec(process_id=str(uuid.uuid4()), pipeline="p", version=1, target="local",
                   pool="local", inputs=inputs, config=config or {})


def entry(key: str, data: bytes, name: str = "input.txt", pointer: str = "/input",
          url: str = "") -> dict:
    return {"pointer": pointer, "name": name, "dataset": "d-" + name, "key": key,
            "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "url": url}


@pytest.fixture
def store(tmp_path) -> FileStorage:
    return FileStorage(tmp_path / "store")


def test_a_file_store_gives_a_hard_link_read_only_in_a_read_only_dir(store, tmp_path):
    store.put("datasets/a", io.BytesIO(TEXT))
    spec = spec_with([entry("datasets/a", TEXT)])
    inputs = tmp_path / "run" / "inputs"
    inputs.parent.mkdir()
    stage_inputs(spec, inputs, store)
    staged = inputs / "input.txt"
    assert staged.read_bytes() == TEXT
    assert not staged.is_symlink()
    assert os.stat(staged).st_ino == os.stat(store.path_of("datasets/a")).st_ino  # no copy
    assert stat.S_IMODE(staged.stat().st_mode) == 0o444
    assert stat.S_IMODE(inputs.stat().st_mode) == 0o555
    remove_tree(inputs)
    assert not inputs.exists()
    assert store.open("datasets/a").read() == TEXT  # the store keeps its object


def test_a_job_of_the_workers_own_user_gets_a_copy_never_a_link(store, tmp_path):
    store.put("datasets/a", io.BytesIO(TEXT))
    inputs = tmp_path / "inputs"
    stage_inputs(spec_with([entry("datasets/a", TEXT)]), inputs, store, link=False)
    staged = inputs / "input.txt"
    assert staged.read_bytes() == TEXT
    assert os.stat(staged).st_ino != os.stat(store.path_of("datasets/a")).st_ino
    assert stat.S_IMODE(staged.stat().st_mode) == 0o444
    assert stat.S_IMODE(store.path_of("datasets/a").stat().st_mode) == 0o600  # untouched


def test_a_second_delivery_keeps_what_the_first_staged(store, tmp_path):
    store.put("datasets/a", io.BytesIO(TEXT))
    spec = spec_with([entry("datasets/a", TEXT)])
    inputs = tmp_path / "inputs"
    stage_inputs(spec, inputs, store)
    stage_inputs(spec, inputs, store)
    assert sorted(p.name for p in inputs.iterdir()) == ["input.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bytes_that_are_not_the_datasets_stage_nothing(store, tmp_path):
    store.put("datasets/a", io.BytesIO(TEXT))
    wrong = entry("datasets/a", TEXT + b"more")
    inputs = tmp_path / "inputs"
    with pytest.raises(ExecutorError, match="bytes") as raised:
        stage_inputs(spec_with([wrong]), inputs, store)
    assert raised.value.permanent
    assert not inputs.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "store"]  # no draft left behind


def test_a_dataset_gone_from_the_store_is_a_permanent_error(store, tmp_path):
    with pytest.raises(ExecutorError, match="not in the store") as raised:
        stage_inputs(spec_with([entry("datasets/gone", TEXT)]), tmp_path / "inputs", store)
    assert raised.value.permanent


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".."])
def test_an_input_name_that_is_not_a_plain_file_name_is_refused(store, tmp_path, name):
    with pytest.raises(ExecutorError, match="not a file name"):
        stage_inputs(spec_with([entry("datasets/a", TEXT, name=name)]), tmp_path / "in", store)


def test_the_config_holds_each_staged_path_at_its_pointer():
    spec = spec_with(
        [entry("k1", TEXT, name="input.txt", pointer="/input"),
         entry("k2", TEXT, name="files-1.csv", pointer="/files/1"),
         entry("k3", TEXT, name="a~b", pointer="/odd~1key~0x")],
        config={"input": "ds-1", "files": ["ds-2", "ds-3"], "odd/key~x": "ds-4", "n": 3})
    config = config_for_job(spec, "/orch/inputs")
    assert config == {"input": "/orch/inputs/input.txt",
                      "files": ["ds-2", "/orch/inputs/files-1.csv"],
                      "odd/key~x": "/orch/inputs/a~b", "n": 3}
    assert spec.config["input"] == "ds-1"  # the spec's own config is untouched


def test_a_pointer_that_names_nothing_is_refused():
    spec = spec_with([entry("k", TEXT, pointer="/missing")], config={"input": "x"})
    with pytest.raises(ExecutorError, match="no value at '/missing'"):
        config_for_job(spec, "/orch/inputs")


class _Served(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self):
        data = self.files.get(self.path)
        if data is None:
            self.send_error(403)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Served)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_signed_url_is_streamed_and_checked(http_server, tmp_path):
    big = os.urandom(3 * 1024 * 1024 + 5)
    _Served.files = {"/signed/a": TEXT, "/signed/big": big}
    spec = spec_with([entry("datasets/a", TEXT, url=f"{http_server}/signed/a"),
                      entry("datasets/b", big, name="big.bin", pointer="/b",
                            url=f"{http_server}/signed/big")],
                     config={"input": "x", "b": "y"})
    inputs = tmp_path / "inputs"
    stage_inputs(spec, inputs, storage=FileStorage(tmp_path / "no-store"))
    assert (inputs / "input.txt").read_bytes() == TEXT
    assert (inputs / "big.bin").read_bytes() == big
    assert stat.S_IMODE((inputs / "big.bin").stat().st_mode) == 0o444


def test_a_url_serving_other_bytes_or_refusing_stages_nothing(http_server, tmp_path):
    _Served.files = {"/signed/a": TEXT.replace(b"fox", b"cat")}
    inputs = tmp_path / "inputs"
    with pytest.raises(ExecutorError, match="SHA-256"):
        stage_inputs(spec_with([entry("k", TEXT, url=f"{http_server}/signed/a")]), inputs)
    with pytest.raises(ExecutorError, match="HTTP 403") as raised:
        stage_inputs(spec_with([entry("k", TEXT, url=f"{http_server}/expired")]), inputs)
    assert raised.value.permanent
    assert not inputs.exists()
    assert list(tmp_path.iterdir()) == []


def test_no_symlink_is_ever_staged(store, tmp_path):
    """A link planted in the store's tree at the object's path is no object: staging refuses
    it rather than link to where it points."""
    secret = tmp_path / "secret"
    secret.write_bytes(TEXT)
    (tmp_path / "store" / "datasets").mkdir(parents=True)
    (tmp_path / "store" / "datasets" / "a").symlink_to(secret)
    inputs = tmp_path / "inputs"
    with pytest.raises(ExecutorError):
        stage_inputs(spec_with([entry("datasets/a", TEXT)]), inputs, store)
    assert not inputs.exists()
