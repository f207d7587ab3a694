"""A finished job's outputs stored (workers/outputs.py): every file under the output dir, nested
dirs and names with spaces and non-ASCII letters included, under the prefix; nothing past the
cap, and what is left out named; a link never followed out of the dir; storing twice gives
the same objects; the upload mode PUTs each file to a URL (a tiny HTTP server of the test's)."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import uuid
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote

import pytest

from workers.contract import Event, JobSpec, PollItem, State
from workers.data_contract import OutputsSpec
from workers.executors.base import Executor, Status, Submission
from workers.outputs import OutputsError, load_spec, mark_released, save_spec, store_outputs
from workers.storage import FileStorage


@pytest.fixture
def store(tmp_path) -> FileStorage:
    return FileStorage(tmp_path / "store")


@pytest.fixture
def out(tmp_path) -> Path:
    path = tmp_path / "outputs"
    path.mkdir()
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spec(max_bytes: int = 1 << 30, **fields) -> OutputsSpec:
    return OutputsSpec(prefix="outputs/p1/", max_bytes=max_bytes, **fields)


def test_every_file_of_nested_dirs_is_stored_under_its_path(store, out):
    files = {"result.json": b'{"ok": 1}', "a b/naïve résumé.txt": "é🦊\n".encode(),
             "deep/er/still/x.bin": os.urandom(70_000), "empty": b""}
    for path, data in files.items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(data)
    stored = store_outputs(out, spec(), store)
    assert stored.message == ""
    assert stored.outputs == [
        {"path": path, "size": len(data), "sha256": sha(data), "key": f"outputs/p1/{path}"}
        for path, data in sorted(files.items())]
    for path, data in files.items():
        assert store.open(f"outputs/p1/{path}").read() == data


def test_storing_again_gives_the_same_objects(store, out):
    (out / "r.txt").write_bytes(b"one")
    first = store_outputs(out, spec(), store)
    second = store_outputs(out, spec(), store)
    assert first.outputs == second.outputs
    assert sorted(p.name for p in (store.root / "outputs" / "p1").iterdir()) == ["r.txt"]


def test_files_past_the_cap_are_not_stored_and_named(store, out):
    (out / "a.txt").write_bytes(b"x" * 60)
    (out / "b.txt").write_bytes(b"y" * 50)
    (out / "c.txt").write_bytes(b"z" * 40)
    stored = store_outputs(out, spec(max_bytes=100), store)
    assert [o["path"] for o in stored.outputs] == ["a.txt", "c.txt"]
    assert "b.txt (50 bytes, over the cap of 100 bytes in all)" in stored.message
    assert store.stat("outputs/p1/b.txt") is None


def test_a_link_is_never_followed_out_of_the_output_dir(store, out, tmp_path):
    secret = tmp_path / "worker-secret.key"
    secret.write_bytes(b"private key")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keys").write_bytes(b"more secrets")
    (out / "key").symlink_to(secret)
    (out / "dir").symlink_to(tmp_path / "elsewhere")
    (out / "real.txt").write_bytes(b"mine")
    stored = store_outputs(out, spec(), store)
    assert [o["path"] for o in stored.outputs] == ["real.txt"]
    assert "key (a link)" in stored.message
    assert "dir (a link)" in stored.message
    assert not any(b"secret" in p.read_bytes() for p in store.root.rglob("*") if p.is_file())


def test_an_output_dir_swapped_for_a_link_is_not_read(store, out, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret").write_bytes(b"secret")
    out.rmdir()
    out.symlink_to(elsewhere)
    with pytest.raises(OutputsError, match="cannot be read"):
        store_outputs(out, spec(), store)
    assert store.stat("outputs/p1/secret") is None


def test_a_fifo_is_left_out_without_hanging(store, out):
    os.mkfifo(out / "pipe")
    stored = store_outputs(out, spec(), store)
    assert stored.outputs == []
    assert "pipe (not a regular file)" in stored.message


def test_no_output_dir_is_no_outputs(store, tmp_path):
    assert store_outputs(tmp_path / "none", spec(), store).outputs == []


def test_a_name_no_store_takes_fails_with_the_reason(store, out):
    (out / ".partial-x").write_bytes(b"x")
    with pytest.raises(OutputsError, match="no store takes its name"):
        store_outputs(out, spec(), store)


class _Uploads(http.server.BaseHTTPRequestHandler):
    received: ClassVar[dict[str, bytes]] = {}

    def do_PUT(self):
        length = int(self.headers["Content-Length"])  # never chunked: WSGI reads by length
        self.received[unquote(self.path)] = self.rfile.read(length)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_upload_mode_puts_each_file_to_its_url(out):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Uploads)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (out / "sub dir").mkdir()
        (out / "sub dir" / "é.txt").write_bytes(b"accent")
        (out / "r.bin").write_bytes(os.urandom(2_500_000))
        url = f"http://127.0.0.1:{server.server_address[1]}/api/up/tok/"
        stored = store_outputs(out, spec(upload_url=url))
    finally:
        server.shutdown()
        server.server_close()
    assert _Uploads.received == {"/api/up/tok/r.bin": (out / "r.bin").read_bytes(),
                                 "/api/up/tok/sub dir/é.txt": b"accent"}
    assert [(o["path"], o["sha256"]) for o in stored.outputs] == [
        ("r.bin", sha((out / "r.bin").read_bytes())), ("sub dir/é.txt", sha(b"accent"))]


class _Ended(Executor):
    """A target whose every job has ended, with its outputs where ``outputs_place`` says."""

    target = "local"

    def __init__(self, run_dir: Path, state: State = State.SUCCEEDED):
        super().__init__("local")
        self.run_dir, self.state = run_dir, state

    def find(self, spec: JobSpec) -> Submission | None:
        return None

    def start(self, spec: JobSpec) -> Submission:
        raise NotImplementedError

    def statuses(self, items):
        return {item.handle: Status(self.state, 0) for item in items}

    def cancel(self, handle):
        pass

    def read_log(self, item, limit):
        from workers.executors.base import LogChunk

        return LogChunk()

    def outputs_place(self, item):
        return self.run_dir / "outputs", self.run_dir / "outputs.json"


def poll_once(executor: Executor) -> Event:
    (event,) = executor.poll([PollItem(process_id=str(uuid.uuid4()), handle="h")])
    return event


def test_the_terminal_event_carries_the_stored_outputs(tmp_path, monkeypatch, out):
    monkeypatch.setenv("ORCH_STORAGE_URL", f"file://{tmp_path / 'store'}")
    (out / "result.json").write_bytes(b"{}")
    save_spec(tmp_path / "outputs.json", {"prefix": "outputs/p1/", "max_bytes": 10})
    assert load_spec(tmp_path / "outputs.json") == spec(max_bytes=10)
    event = poll_once(_Ended(tmp_path))
    assert event.state == State.SUCCEEDED
    assert event.outputs == [{"path": "result.json", "size": 2, "sha256": sha(b"{}"),
                              "key": "outputs/p1/result.json"}]
    (out / "big").write_bytes(b"x" * 11)
    event = poll_once(_Ended(tmp_path))
    assert event.state == State.SUCCEEDED
    assert "big (11 bytes, over the cap of 10 bytes in all)" in event.message


def test_outputs_that_cannot_be_stored_fail_the_job_with_the_reason(tmp_path, monkeypatch, out):
    (tmp_path / "store").write_text("a file where the store's dir should be")
    monkeypatch.setenv("ORCH_STORAGE_URL", f"file://{tmp_path / 'store'}")
    (out / "result.json").write_bytes(b"{}")
    save_spec(tmp_path / "outputs.json", {"prefix": "outputs/p1/", "max_bytes": 10})
    event = poll_once(_Ended(tmp_path))
    assert event.state == State.FAILED
    assert "outputs not stored" in event.message
    assert "result.json" in event.message
    stopped = poll_once(_Ended(tmp_path, State.STOPPED))  # a stop stays a stop
    assert stopped.state == State.STOPPED


def test_a_poll_after_the_release_reports_no_second_end(tmp_path, monkeypatch, out):
    """A poll built before the control plane applied the end finds the run released: an end
    reported again, with the output dir gone, would say the job kept nothing."""
    monkeypatch.setenv("ORCH_STORAGE_URL", f"file://{tmp_path / 'store'}")
    (out / "result.json").write_bytes(b"{}")
    save_spec(tmp_path / "outputs.json", {"prefix": "outputs/p1/", "max_bytes": 10})
    assert poll_once(_Ended(tmp_path)).outputs
    mark_released(tmp_path / "outputs.json")
    (out / "result.json").unlink()
    late = poll_once(_Ended(tmp_path))
    assert late.state is None
    assert late.outputs is None


def test_a_job_without_an_outputs_spec_ends_as_before(tmp_path):
    event = poll_once(_Ended(tmp_path))
    assert event.state == State.SUCCEEDED
    assert event.outputs is None
