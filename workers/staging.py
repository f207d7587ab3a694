"""Datasets into a job: each ``JobSpec.inputs`` entry staged read-only into the job's inputs
dir, and the config the job reads with each dataset field holding the staged file's path.

Where the bytes come from, in the order tried:

- the entry's ``url`` (a signed, expiring GET on the control plane, for a worker that reaches
  neither the store's path nor its bucket): streamed with ``requests``;
- else the store (``ORCH_STORAGE_URL``, as the control plane's): on a file store a hard link
  when the inputs dir is on the same file system (no copy; never a symlink, which a job could
  follow or swap), else a copy; on an S3 store a download.

Every file is checked against the entry's ``size`` (and its ``sha256`` whenever its bytes pass
through the worker), made 0444, and the dir 0555 once it is full. The dir is filled under a
draft name and renamed into place, so a second delivery of the job spec finds it whole or not
at all. Nothing here runs a shell: names and keys are data.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from .contract import JobSpec
from .data_contract import StagedInput
from .executors.base import ExecutorError
from .storage import FileStorage, ObjectMissing, Storage, StorageError, storage_from_url
from .storage.base import CHUNK_BYTES

log = logging.getLogger(__name__)

FILE_MODE = 0o444
DIR_MODE = 0o555
# Seconds to connect to, and between two reads from, the control plane's signed URL.
URL_TIMEOUT_S = (10, 60)
# HTTP answers to a signed URL that a later try cannot change (expired, refused, gone).
PERMANENT_HTTP = frozenset({400, 401, 403, 404, 410})


def storage_url() -> str:
    """The worker's ``ORCH_STORAGE_URL``, else the embedded default the control plane uses
    too: ``var/storage`` of the project."""
    from .environment import var_dir

    return os.environ.get("ORCH_STORAGE_URL") or f"file://{var_dir() / 'storage'}"


def worker_storage() -> Storage:
    """The store this worker reaches (``ORCH_STORAGE_URL``)."""
    try:
        return storage_from_url(storage_url())
    except StorageError as exc:
        raise ExecutorError(f"ORCH_STORAGE_URL: {exc}", permanent=True) from exc


def inputs_of(spec: JobSpec) -> list[StagedInput]:
    """The spec's inputs, checked: a name is one plain file name, each used once."""
    staged, names = [], set()
    for entry in spec.inputs:
        try:
            item = StagedInput(**entry)
        except TypeError as exc:
            raise ExecutorError(f"inputs: not a staged input: {entry!r}", permanent=True) from exc
        if (not item.name or "/" in item.name or "\0" in item.name
                or item.name in (".", "..") or item.name in names):
            raise ExecutorError(f"inputs: {item.name!r} is not a file name of its own",
                                permanent=True)
        names.add(item.name)
        staged.append(item)
    return staged


# --- the config the job reads -----------------------------------------------------------------


def config_for_job(spec: JobSpec, job_inputs_dir: str) -> dict[str, Any]:
    """``spec.config`` with the value at each input's ``pointer`` replaced by the path the job
    sees its file at (``job_inputs_dir``/name: a container path for Docker, a host path for
    local and Slurm jobs)."""
    config = copy.deepcopy(spec.config)
    for item in inputs_of(spec):
        config = set_pointer(config, item.pointer, f"{job_inputs_dir.rstrip('/')}/{item.name}")
    return config


def set_pointer(document: Any, pointer: str, value: Any) -> Any:
    """``document`` with the value an existing JSON pointer (RFC 6901) names replaced by
    ``value``. The pointer comes from the control plane; one that names nothing is refused."""
    if pointer == "":
        return value
    if not pointer.startswith("/"):
        raise ExecutorError(f"inputs: {pointer!r} is not a JSON pointer", permanent=True)
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]
    parent = document
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(parent, dict) and part in parent:
            if last:
                parent[part] = value
            parent = parent[part]
        elif isinstance(parent, list) and part.isdigit() and int(part) < len(parent):
            if last:
                parent[int(part)] = value
            parent = parent[int(part)]
        else:
            raise ExecutorError(f"inputs: the config has no value at {pointer!r}",
                                permanent=True)
    return document


# --- staging ------------------------------------------------------------------------------------


def stage_inputs(spec: JobSpec, inputs_dir: Path, storage: Storage | None = None, *,
                 link: bool = True) -> None:
    """Fill ``inputs_dir`` with the spec's inputs (read-only files in a read-only dir), unless
    an earlier delivery did. ``link``: False when the job runs as the worker's own user, who
    owns the store's files and could make a linked one writable again: copies then.
    ExecutorError: permanent when a later try cannot help (a dataset gone from the store,
    bytes that are not the dataset's, an expired URL)."""
    items = inputs_of(spec)
    if not items or inputs_dir.is_dir():
        return
    draft = Path(tempfile.mkdtemp(dir=inputs_dir.parent, prefix=f".{inputs_dir.name}-"))
    try:
        stage_files(items, draft, storage, link=link)
        os.chmod(draft, DIR_MODE)
        os.rename(draft, inputs_dir)
    except BaseException:
        remove_tree(draft)
        raise
    if inputs_dir.is_symlink():  # planted by a job between the check and the rename
        raise ExecutorError(f"{inputs_dir} is a link", permanent=True)


def stage_files(items: list[StagedInput], directory: Path, storage: Storage | None, *,
                link: bool = True) -> None:
    """Each input as a read-only file of ``directory`` (which exists and holds none of them)."""
    for item in items:
        _stage_one(item, directory / item.name, storage, link)


def _stage_one(item: StagedInput, dest: Path, storage: Storage | None, link: bool) -> None:
    if item.url:
        _download(item, dest)
        return
    store = storage or worker_storage()
    try:
        if link and isinstance(store, FileStorage) and _link(store, item, dest):
            return
        with store.open(item.key) as source:
            _write_checked(item, dest, source.read)
    except ObjectMissing as exc:
        raise ExecutorError(f"dataset {item.dataset} is not in the store ({item.key})",
                            permanent=True) from exc
    except StorageError as exc:
        raise ExecutorError(f"dataset {item.dataset}: {exc}") from exc


def _link(store: FileStorage, item: StagedInput, dest: Path) -> bool:
    """A hard link of the stored file at ``dest``, read-only; False when none can be made
    (another file system, a store file this worker may not make read-only): copy then."""
    source = store.path_of(item.key)
    try:
        os.link(source, dest, follow_symlinks=False)
    except FileNotFoundError:
        raise ObjectMissing(item.key) from None
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK):
            return False
        raise
    found = os.lstat(dest)
    try:
        if not stat.S_ISREG(found.st_mode):  # a link planted in the store is no object
            raise ExecutorError(f"dataset {item.dataset}: the store has no file at "
                                f"{item.key}", permanent=True)
        if found.st_size != item.size:
            raise ExecutorError(f"dataset {item.dataset}: the store holds {found.st_size} "
                                f"bytes, not {item.size}", permanent=True)
        if stat.S_IMODE(found.st_mode) != FILE_MODE:
            os.chmod(dest, FILE_MODE)  # the store's file too: one inode, and only ever read
    except PermissionError:
        dest.unlink()
        return False
    except BaseException:
        dest.unlink()
        raise
    return True


def _download(item: StagedInput, dest: Path) -> None:
    import requests  # the [worker] extra's; only a url-mode worker needs it

    try:
        with requests.get(item.url, stream=True, timeout=URL_TIMEOUT_S) as answer:
            if answer.status_code != 200:
                raise ExecutorError(
                    f"dataset {item.dataset}: its URL answered HTTP {answer.status_code}",
                    permanent=answer.status_code in PERMANENT_HTTP)
            chunks = answer.iter_content(CHUNK_BYTES)
            _write_checked(item, dest, lambda _size: next(chunks, b""))
    except requests.RequestException as exc:
        raise ExecutorError(f"dataset {item.dataset}: its URL cannot be read: {exc}") from exc


def _write_checked(item: StagedInput, dest: Path, read) -> None:
    """Write what ``read`` gives to ``dest`` (0444), stopping past ``item.size``; the bytes
    must be the dataset's: its size and SHA-256."""
    digest, size = hashlib.sha256(), 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := read(CHUNK_BYTES):
            size += len(chunk)
            if size > item.size:
                break
            digest.update(chunk)
            out.write(chunk)
        os.fchmod(out.fileno(), FILE_MODE)
    if size != item.size or (item.sha256 and digest.hexdigest() != item.sha256):
        raise ExecutorError(f"dataset {item.dataset}: the bytes read are not the dataset's "
                            f"({'size' if size != item.size else 'SHA-256'} differs)",
                            permanent=True)


def remove_tree(path: Path) -> None:
    """Remove a dir this worker made read-only (an inputs dir), never following a link."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                if os.fstat(fd).st_uid == os.geteuid():
                    os.fchmod(fd, 0o700)
            finally:
                os.close(fd)
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
