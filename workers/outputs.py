"""A finished job's outputs: every regular file under its output dir, stored under the spec's
``prefix`` + its path relative to the dir (through ``workers.storage``, or PUT to
``upload_url`` + that path for a worker that reaches no store), up to ``max_bytes`` in all.

The job owns its output dir and may have left anything there: the walk holds each dir open
and opens every name in it without following a link (``O_NOFOLLOW`` relative to the dir's
descriptor), so a link, or a dir swapped for one while the walk runs, never leads it out of
the output dir. What is not stored (over the cap, a link, a fifo, a name no store takes) is
named in the result's message, never dropped silently. Storing one key twice (a poll
delivered again) writes the same bytes again under the same key.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .data_contract import OutputsSpec, StoredOutput
from .storage import BadKey, Storage
from .storage.base import CHUNK_BYTES, HashingReader, checked_key

log = logging.getLogger(__name__)

# Dirs deeper than this under the output dir are not walked (and said so).
MAX_DEPTH = 64
# Names of files left out that a message lists at most; the rest are counted.
NAMED_MAX = 10
UPLOAD_TIMEOUT_S = (10, 300)
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class OutputsError(Exception):
    """The outputs could not be stored: the job's process fails with this reason."""


class AlreadyReleased(Exception):
    """The run's terminal event was sent and its output dir released: a later poll (one
    built before the control plane applied that event) has nothing to report of its end."""


@dataclass
class StoredOutputs:
    """What storing a job's outputs did: the ``StoredOutput`` dicts of the files stored, and
    the files left out, each with why."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)

    @property
    def message(self) -> str:
        """For the process's message: the outputs not stored ("" when every file was)."""
        if not self.left_out:
            return ""
        named = [f"{path} ({why})" for path, why in self.left_out[:NAMED_MAX]]
        more = len(self.left_out) - NAMED_MAX
        return ("outputs not stored: " + "; ".join(named)
                + (f"; and {more} more" if more > 0 else ""))


def outputs_spec(data: dict[str, Any] | None) -> OutputsSpec | None:
    """The ``JobSpec.outputs`` dict as an OutputsSpec; None when the job keeps no outputs."""
    if not data:
        return None
    try:
        spec = OutputsSpec(**data)
    except TypeError as exc:
        raise OutputsError(f"outputs: not an outputs spec: {data!r}") from exc
    if not spec.upload_url:
        try:
            checked_key(spec.prefix.rstrip("/") or "/")
        except BadKey as exc:
            raise OutputsError(f"outputs: prefix {spec.prefix!r}: {exc}") from exc
    return spec


# --- the spec kept between the job's start and its end ----------------------------------------


def save_spec(path: Path, spec: dict[str, Any]) -> None:
    """Keep the job spec's ``outputs`` at ``path``, a file of the worker's own (a poll carries
    handles only). Nothing when the job keeps no outputs."""
    from .executors.workdirs import write_atomic

    if spec:
        write_atomic(path, json.dumps(spec))


def load_spec(path: Path) -> OutputsSpec | None:
    """The outputs spec kept at ``path``; None when there is none (a job started before the
    worker stored outputs). AlreadyReleased once :func:`mark_released` marked it."""
    from .executors.workdirs import read_from

    text = read_from(path, 0, 1 << 20)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise OutputsError(f"{path}: {exc}") from exc
    if data.get(RELEASED):
        raise AlreadyReleased(str(path))
    return outputs_spec(data)


RELEASED = "released"


def mark_released(path: Path) -> None:
    """Keep at ``path`` (a marker that outlives the run dir's clean-up) that the run's outputs
    were stored, reported and released: a poll that finds the job ended later must not report
    its end again with an empty output dir."""
    from .executors.workdirs import write_atomic

    if path.exists():
        write_atomic(path, json.dumps({RELEASED: True}))


# --- storing --------------------------------------------------------------------------------------


def store_outputs(out_dir: Path, spec: OutputsSpec, storage: Storage | None = None,
                  owner_only: bool = True) -> StoredOutputs:
    """Store every regular file under ``out_dir`` (none when it does not exist), in the order
    of their paths, while the total stays within ``spec.max_bytes``; a file that would pass it
    is left out and named. Only files of the output dir's owner (the job's user) are stored
    (unless not ``owner_only``: a task's own volume): a hard link to a file of someone else's
    is not the job's output. OutputsError when a file could not be stored: the job's process
    fails."""
    result, total = StoredOutputs(), 0
    try:
        top = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return result
    except OSError as exc:
        raise OutputsError(f"the output dir {out_dir} cannot be read: {exc.strerror}") from exc
    owner = os.fstat(top).st_uid if owner_only else None
    if storage is None and not spec.upload_url:
        from .staging import worker_storage

        storage = worker_storage()
    try:
        for path, fd in _files(top, "", result, 0):
            try:
                size = os.fstat(fd).st_size
                why = _refusal(fd, path, owner)
                if why is None and total + size > spec.max_bytes:
                    why = f"{size} bytes, over the cap of {spec.max_bytes} bytes in all"
                if why is not None:
                    result.left_out.append((path, why))
                    continue
                stored = _store(fd, size, path, spec, storage)
                total += stored.size
                result.outputs.append(asdict(stored))
            finally:
                os.close(fd)
    finally:
        os.close(top)
    return result


def _refusal(fd: int, path: str, owner: int | None) -> str | None:
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode):
        return "not a regular file"
    if owner is not None and found.st_uid != owner:
        return "not the job's own file"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not UTF-8"
    return None


def _files(dir_fd: int, rel: str, result: StoredOutputs, depth: int) -> Iterator[tuple[str, int]]:
    """(relative path, open descriptor) of every file under ``dir_fd``, by path; links and
    dirs too deep are recorded in ``result`` as left out. The caller closes each descriptor."""
    with os.scandir(dir_fd) as scan:
        names = sorted(entry.name for entry in scan)
    for name in names:
        path = f"{rel}{name}"
        try:
            fd = os.open(name, OPEN_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            continue  # removed since the listing
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                result.left_out.append((path, "a link"))
                continue
            raise OutputsError(f"output {path!r} cannot be read: {exc.strerror}") from exc
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            yield path, fd
            continue
        try:
            if depth + 1 >= MAX_DEPTH:
                result.left_out.append((path + "/", f"deeper than {MAX_DEPTH} dirs"))
                continue
            yield from _files(fd, path + "/", result, depth + 1)
        finally:
            os.close(fd)


def _store(fd: int, size: int, path: str, spec: OutputsSpec,
           storage: Storage | None) -> StoredOutput:
    key = f"{spec.prefix}{path}" if spec.prefix.endswith("/") or not spec.prefix \
        else f"{spec.prefix}/{path}"
    reader = _FileReader(fd, size)
    if spec.upload_url:
        return _upload(reader, path, key, spec.upload_url)
    if storage is None:
        raise OutputsError("no store to keep outputs in")
    try:
        stored_size, sha256 = storage.put(key, reader)
    except BadKey as exc:
        raise OutputsError(f"output {path!r}: no store takes its name: {exc}") from exc
    except Exception as exc:
        raise OutputsError(f"output {path!r} could not be stored: {exc}") from exc
    return StoredOutput(path=path, size=stored_size, sha256=sha256, key=key)


def _upload(reader: _FileReader, path: str, key: str, upload_url: str) -> StoredOutput:
    import requests  # the [worker] extra's; only a url-mode worker needs it

    hashing = _Sized(HashingReader(reader), reader.size)
    url = upload_url + quote(path, safe="/")
    try:
        answer = requests.put(url, data=hashing, timeout=UPLOAD_TIMEOUT_S,
                              headers={"Content-Type": "application/octet-stream"})
    except requests.RequestException as exc:
        raise OutputsError(f"output {path!r} could not be uploaded: {exc}") from exc
    if answer.status_code >= 300:
        raise OutputsError(f"output {path!r}: the upload answered HTTP {answer.status_code}: "
                           f"{answer.text[:200]}")
    return StoredOutput(path=path, size=hashing.reader.size, sha256=hashing.reader.sha256,
                        key=key)


class _FileReader:
    """Reads at most ``size`` bytes of ``fd`` from its start: a file that grows while it is
    stored (a process the job left behind) is stored as it was when the walk saw it."""

    def __init__(self, fd: int, size: int):
        self.fd, self.size, self.left = fd, size, size
        os.set_blocking(fd, True)
        os.lseek(fd, 0, os.SEEK_SET)

    def read(self, size: int = -1) -> bytes:
        wanted = self.left if size is None or size < 0 else min(size, self.left)
        data = os.read(self.fd, min(wanted, CHUNK_BYTES)) if wanted > 0 else b""
        self.left -= len(data)
        return data


class _Sized:
    """A body ``requests`` sends with a Content-Length (not chunked): a WSGI server reads a
    request's body by its length."""

    def __init__(self, reader: HashingReader, size: int):
        self.reader, self.size = reader, size

    def __len__(self) -> int:
        return self.size

    def read(self, size: int = -1) -> bytes:
        return self.reader.read(size)
