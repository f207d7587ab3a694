"""The storage interface (workers/storage): the same promises from the file store and from the
S3 store, the latter against moto's S3 in server mode (an emulator: no AWS is reachable here),
started in this process as tests/executors/test_ecs.py starts moto's ECS.

Every test runs on both stores: what is put reads back whole and by range with its size and
SHA-256, a put is all or nothing (a reader never sees half an object, a failed put leaves
nothing), and no key leaves the store's root."""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from testbed.ecs_emulator import FAKE_CREDENTIALS
from workers.storage import (
    BadKey,
    FileStorage,
    ObjectMissing,
    StorageError,
    storage_from_url,
)
from workers.storage.base import CHUNK_BYTES, PARTIAL_PREFIX
from workers.storage.pipe import PipeAborted, PutPipe
from workers.storage.s3 import S3Storage, s3_client

BAD_KEYS = ["", "/etc/passwd", "../outside", "a/../../outside", "a/..", "a\0b", "a//b", "./a",
            "a/", f"a/{PARTIAL_PREFIX}x"]


@contextmanager
def s3_serving() -> Iterator[str]:
    """moto's S3 in server mode on a free port, under fake credentials that hide any real AWS
    profile, with ORCH_S3_ENDPOINT_URL pointing the stores at it: its URL."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as env:
        for key, value in FAKE_CREDENTIALS.items():
            env.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_ENDPOINT_URL"):
            env.delenv(key, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        env.setenv("ORCH_S3_ENDPOINT_URL", f"http://{host}:{port}")
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture(scope="module")
def emulator():
    with s3_serving() as url:
        yield url


@pytest.fixture
def bucket(emulator):
    """A fresh bucket of the emulator: (its name, a client)."""
    client = s3_client()
    name = f"orch-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name, client


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return FileStorage(tmp_path / "store")
    name, _ = request.getfixturevalue("bucket")
    return storage_from_url(f"s3://{name}/some/prefix")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_all(store, key, start=0, end=None) -> bytes:
    with store.open(key, start, end) as stream:
        return stream.read()


class Failing(io.RawIOBase):
    """A reader that gives ``good`` bytes, then calls ``midway`` (if any), then fails: a
    client that goes away in the middle of an upload."""

    def __init__(self, good: bytes, midway=None):
        self.data, self.midway, self.done = io.BytesIO(good), midway, False

    def readable(self):
        return True

    def read(self, size=-1):
        chunk = self.data.read(size)
        if chunk:
            return chunk
        if self.midway and not self.done:
            self.done = True
            self.midway()
        raise ConnectionResetError("the client went away")


def leftovers(store) -> list[str]:
    """Anything a store holds beyond its objects: partial files, unfinished uploads."""
    if isinstance(store, FileStorage):
        return [str(p) for p in store.root.rglob(f"{PARTIAL_PREFIX}*")]
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket)
    return [u["Key"] for u in uploads.get("Uploads", [])]


# --- what is put reads back -----------------------------------------------------------------


def test_put_answers_size_and_sha256_and_the_bytes_read_back(store):
    data = os.urandom(3 * CHUNK_BYTES + 12345)  # several chunks, not a whole number of them
    size, sha256 = store.put("datasets/one", io.BytesIO(data))
    assert (size, sha256) == (len(data), digest(data))
    assert store.stat("datasets/one") == len(data)
    assert read_all(store, "datasets/one") == data


def test_an_object_bigger_than_a_multipart_part_reads_back_whole(store):
    data = os.urandom(20 * CHUNK_BYTES + 1)  # S3: a multipart upload of three parts
    assert store.put("big", io.BytesIO(data)) == (len(data), digest(data))
    assert read_all(store, "big") == data


def test_an_empty_object_is_an_object(store):
    assert store.put("empty", io.BytesIO(b"")) == (0, digest(b""))
    assert store.stat("empty") == 0
    assert read_all(store, "empty") == b""


def test_a_put_replaces_the_object(store):
    store.put("k", io.BytesIO(b"old bytes"))
    store.put("k", io.BytesIO(b"new"))
    assert read_all(store, "k") == b"new"


@pytest.mark.parametrize("start, end, expected", [
    (0, None, b"0123456789"), (3, None, b"3456789"), (3, 7, b"3456"), (9, 10, b"9"),
    (0, 1, b"0"), (4, 4, b""), (8, 50, b"89"), (10, None, b""), (25, None, b""), (25, 30, b""),
])
def test_range_reads(store, start, end, expected):
    store.put("digits", io.BytesIO(b"0123456789"))
    assert read_all(store, "digits", start, end) == expected


def test_a_range_read_streams_in_pieces(store):
    data = os.urandom(2 * CHUNK_BYTES)
    store.put("blob", io.BytesIO(data))
    with store.open("blob", 100, CHUNK_BYTES + 300) as stream:
        pieces = list(iter(lambda: stream.read(4096), b""))
    assert b"".join(pieces) == data[100:CHUNK_BYTES + 300]
    assert max(map(len, pieces)) <= 4096


@pytest.mark.parametrize("start, end", [(-1, None), (5, 4), (0, -1)])
def test_a_range_that_is_no_range_is_refused(store, start, end):
    store.put("k", io.BytesIO(b"abc"))
    with pytest.raises(ValueError, match=r"start|end"):
        store.open("k", start, end)


def test_what_is_not_there(store):
    assert store.stat("nothing/here") is None
    with pytest.raises(ObjectMissing):
        store.open("nothing/here")
    with pytest.raises(ObjectMissing):
        store.open("nothing/here", 0, 0)
    store.delete("nothing/here")  # no error


def test_delete_removes_the_object_and_only_it(store):
    store.put("a/one", io.BytesIO(b"1"))
    store.put("a/two", io.BytesIO(b"2"))
    store.delete("a/one")
    assert store.stat("a/one") is None
    with pytest.raises(ObjectMissing):
        store.open("a/one")
    assert read_all(store, "a/two") == b"2"
    store.delete("a/one")  # again: no error


# --- a put is all or nothing ----------------------------------------------------------------


def test_a_failed_put_leaves_no_object_and_nothing_partial(store):
    with pytest.raises(ConnectionResetError):
        store.put("half", Failing(os.urandom(CHUNK_BYTES + 10)))
    assert store.stat("half") is None
    assert leftovers(store) == []


def test_a_failed_multipart_put_leaves_no_object_and_no_upload(store):
    with pytest.raises(ConnectionResetError):
        store.put("half", Failing(os.urandom(17 * CHUNK_BYTES)))  # S3: parts sent already
    assert store.stat("half") is None
    assert leftovers(store) == []


def test_a_failed_put_keeps_the_old_object(store):
    store.put("k", io.BytesIO(b"the old object"))
    with pytest.raises(ConnectionResetError):
        store.put("k", Failing(b"the new one, cut short"))
    assert read_all(store, "k") == b"the old object"


def test_while_a_put_runs_readers_see_the_old_object_whole(store):
    store.put("k", io.BytesIO(b"old"))
    seen = {}

    def look():  # half of the new object has been read from the client by now
        seen["stat"] = store.stat("k")
        seen["bytes"] = read_all(store, "k")

    with pytest.raises(ConnectionResetError):
        store.put("k", Failing(os.urandom(CHUNK_BYTES * 2), midway=look))
    assert seen == {"stat": 3, "bytes": b"old"}


def test_while_a_first_put_runs_there_is_no_object(store):
    seen = {}
    with pytest.raises(ConnectionResetError):
        store.put("new", Failing(os.urandom(CHUNK_BYTES), midway=lambda: seen.update(
            stat=store.stat("new"))))
    assert seen == {"stat": None}


# --- a put fed by pushes (an upload handler's) -----------------------------------------------


def test_a_pipe_writes_what_is_pushed_once_finished(store):
    data = os.urandom(20 * CHUNK_BYTES + 5)
    pipe = PutPipe(store, "pushed")
    for at in range(0, len(data), 64 * 1024):  # the sizes a web server hands over
        pipe.write(data[at:at + 64 * 1024])
    assert pipe.finish() == (len(data), digest(data))
    assert read_all(store, "pushed") == data


def test_a_pipe_shows_nothing_until_finished(store):
    pipe = PutPipe(store, "pushed")
    pipe.write(os.urandom(3 * CHUNK_BYTES))
    assert store.stat("pushed") is None
    assert pipe.finish()[0] == 3 * CHUNK_BYTES
    assert store.stat("pushed") == 3 * CHUNK_BYTES


@pytest.mark.parametrize("pushed", [0, CHUNK_BYTES // 2, 17 * CHUNK_BYTES])
def test_an_aborted_pipe_leaves_nothing(store, pushed):
    pipe = PutPipe(store, "pushed")
    pipe.write(os.urandom(pushed))
    pipe.abort()
    assert store.stat("pushed") is None
    assert leftovers(store) == []
    pipe.abort()  # again: harmless
    with pytest.raises(StorageError):
        pipe.write(b"more")


def test_a_pipe_whose_store_fails_says_so_to_the_producer(tmp_path):
    store = FileStorage(tmp_path / "store")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "a-file").write_bytes(b"")  # "a-file/x" cannot be made
    pipe = PutPipe(store, "a-file/x")
    time.sleep(0.5)  # the put has failed by now
    with pytest.raises(FileExistsError):
        pipe.write(b"x" * CHUNK_BYTES)
    with pytest.raises(StorageError, match="ended"):
        pipe.finish()
    pipe.abort()  # harmless after a failure


def test_a_pipe_whose_store_fails_says_so_when_finishing(tmp_path):
    store = FileStorage(tmp_path / "store")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "a-file").write_bytes(b"")
    with pytest.raises(FileExistsError):
        PutPipe(store, "a-file/x").finish()


def test_a_pipe_nobody_feeds_gives_up(tmp_path):
    store = FileStorage(tmp_path)
    pipe = PutPipe(store, "k", stall_s=0.2)
    pipe.write(b"started, then the producer went quiet")
    time.sleep(1)  # five times its patience
    with pytest.raises(PipeAborted):
        pipe.finish()
    assert store.stat("k") is None
    assert leftovers(store) == []


# --- keys stay in the store -----------------------------------------------------------------


@pytest.mark.parametrize("key", BAD_KEYS)
def test_a_key_that_could_leave_the_store_is_refused_everywhere(store, key, tmp_path):
    before = sorted(tmp_path.rglob("*"))
    for call in (lambda: store.put(key, io.BytesIO(b"x")), lambda: store.open(key),
                 lambda: store.stat(key), lambda: store.delete(key),
                 lambda: store.url(key, 60)):
        with pytest.raises(BadKey):
            call()
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere


def test_a_link_in_the_file_store_does_not_lead_out_of_it(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"the worker's key")
    store = FileStorage(tmp_path / "store")
    store.put("real/object", io.BytesIO(b"mine"))
    (store.root / "link").symlink_to(outside)
    (store.root / "real" / "file-link").symlink_to(outside / "secret")
    with pytest.raises(BadKey):
        store.put("link/new", io.BytesIO(b"planted"))
    with pytest.raises(BadKey):
        store.open("link/secret")
    with pytest.raises(ObjectMissing):  # a link where an object would be is not one
        store.open("real/file-link")
    assert store.stat("real/file-link") is None
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_file_objects_are_the_stores_alone(tmp_path):
    store = FileStorage(tmp_path / "store")
    store.put("datasets/x", io.BytesIO(b"x"))
    for path in (store.root, store.root / "datasets"):
        assert path.stat().st_mode & 0o777 == 0o700, path
    assert (store.root / "datasets" / "x").stat().st_mode & 0o777 == 0o600


# --- links without credentials --------------------------------------------------------------


def test_the_file_store_has_no_links(tmp_path):
    store = FileStorage(tmp_path)
    store.put("k", io.BytesIO(b"x"))
    assert store.url("k", 60) is None


def test_the_s3_store_gives_a_presigned_get_that_needs_no_credentials(bucket):
    name, _ = bucket
    store = S3Storage(name, "pre")
    store.put("k", io.BytesIO(b"signed bytes"))
    url = store.url("k", 60)
    assert f"/{name}/pre/k?" in url
    assert "X-Amz-Signature=" in url
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 200
    assert answer.content == b"signed bytes"
    # moto checks no signature (an emulator): that AWS refuses a forged or expired one is
    # AWS's part, not tested here.
    assert "X-Amz-Expires=60&" in url


def test_the_s3_store_keeps_objects_under_its_prefix(bucket):
    name, client = bucket
    storage_from_url(f"s3://{name}/runs/2026/").put("datasets/d", io.BytesIO(b"x"))
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=name)["Contents"]]
    assert keys == ["runs/2026/datasets/d"]


# --- picked by URL --------------------------------------------------------------------------


def test_storage_from_url_picks_the_store(tmp_path, emulator):
    files = storage_from_url(f"file://{tmp_path}/store")
    assert isinstance(files, FileStorage)
    assert files.root == tmp_path / "store"
    assert storage_from_url("file://localhost/srv/a%20b").root == Path("/srv/a b")
    s3 = storage_from_url("s3://my-bucket/a/prefix")
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix) == ("my-bucket", "a/prefix")
    assert s3.client.meta.endpoint_url == emulator  # ORCH_S3_ENDPOINT_URL


def test_aws_endpoint_url_is_read_too(monkeypatch):
    monkeypatch.delenv("ORCH_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert storage_from_url("s3://b").client.meta.endpoint_url == "http://127.0.0.1:9"


@pytest.mark.parametrize("url", [
    "file://relative/path", "file:relative", "file://host.example.org/srv", "s3:///prefix",
    "ftp://host/x", "/srv/storage", "", "file:///srv?x=1",
])
def test_any_other_url_is_refused_with_what_it_should_be(url):
    with pytest.raises(StorageError, match=r"file:///|s3://|query"):
        storage_from_url(url)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker gives files away")
def test_a_root_worker_gives_what_it_writes_to_the_stores_owner(tmp_path):
    """Compose's local worker runs as root and shares the store with a control plane that is
    not: the datasets' directories and the outputs it writes must stay readable by the owner."""
    root = tmp_path / "storage"
    root.mkdir()
    os.chown(root, 65534, 65534)
    store = FileStorage(root)
    store.put("outputs/abc/result.json", io.BytesIO(b"{}"))
    for path in (root / "outputs", root / "outputs" / "abc", root / "outputs/abc/result.json"):
        assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534), path
