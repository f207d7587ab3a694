"""A store on a file system: ``file:///srv/orchestration/storage``, the embedded default
(``var/storage``) and the shared file system of an HPC site.

An object is the file ``<root>/<key>``. A put writes a partial file beside it (a name no key
can reach) and renames it into place once its bytes are on disk, so a reader, a crash or a
client that gives up never leaves half an object under a key. Paths are checked twice: the key
by its parts (``base.checked_key``), and the directory it lands in by where it really is, so a
link planted in the tree cannot lead a read or a write out of the root.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, cast

from .base import (
    CHUNK_BYTES,
    PARTIAL_PREFIX,
    BadKey,
    HashingReader,
    ObjectMissing,
    Readable,
    Storage,
    StorageError,
    checked_key,
    checked_range,
)

# Objects are the control plane's and its workers' alone: a job gets its inputs staged.
DIR_MODE = 0o700


class FileStorage(Storage):
    def __init__(self, root: str | Path):
        root = Path(root)
        if not root.is_absolute():
            raise StorageError(f"a file store's root must be an absolute path, not {root}")
        self.root = root

    def __repr__(self) -> str:
        return f"FileStorage({str(self.root)!r})"

    def path_of(self, key: str) -> Path:
        """Where the object ``key`` lives; BadKey when the key, or a link on the way to it,
        would leave the root."""
        path = self.root.joinpath(*checked_key(key))
        real_root = self.root.resolve()
        real_dir = path.parent.resolve()
        if real_dir != real_root and not real_dir.is_relative_to(real_root):
            raise BadKey(f"{key!r} leads out of the store (through a link)")
        return path

    def put(self, key: str, fileobj: Readable) -> tuple[int, str]:
        path = self.path_of(key)
        self._make_dirs(path.parent)
        self.path_of(key)  # again: a link may have been planted while the dirs were made
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=PARTIAL_PREFIX)
        try:
            self._own(partial)
            reader = HashingReader(fileobj)
            with os.fdopen(fd, "wb") as out:
                while chunk := reader.read(CHUNK_BYTES):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())  # on disk before its name says it is there
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return reader.size, reader.sha256

    def _make_dirs(self, directory: Path) -> None:
        """``directory`` and every missing one above it up to the root, each with DIR_MODE
        (``mkdir(parents=True)`` gives the ones above the default mode)."""
        missing = []
        while not directory.is_dir() and directory != directory.parent:
            missing.append(directory)
            directory = directory.parent
        for each in reversed(missing):
            each.mkdir(mode=DIR_MODE, exist_ok=True)
            self._own(each)

    def _own(self, path: str | Path) -> None:
        """A root worker sharing the store with a control plane that is not root (compose's
        shared volume) gives what it writes to the store's owner, who must read it."""
        if os.geteuid() != 0:
            return
        owner = self.root.stat()
        if owner.st_uid != 0:
            os.chown(path, owner.st_uid, owner.st_gid)

    def open(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        checked_range(start, end)
        path = self.path_of(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissing(f"no object {key!r}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a link is not an object
                raise ObjectMissing(f"no object {key!r}") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a fifo or a device is not one either
            os.close(fd)
            raise ObjectMissing(f"no object {key!r}")
        os.set_blocking(fd, True)
        stream = os.fdopen(fd, "rb")
        stream.seek(start)
        if end is None:  # the file itself: a server may send it with sendfile
            return stream
        return cast(BinaryIO, io.BufferedReader(_Bounded(stream, end - start), CHUNK_BYTES))

    def stat(self, key: str) -> int | None:
        try:
            found = os.stat(self.path_of(key), follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return found.st_size if stat.S_ISREG(found.st_mode) else None

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        try:
            if stat.S_ISDIR(os.stat(path, follow_symlinks=False).st_mode):
                raise StorageError(f"{key!r} is a folder of objects, not one")
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return

    def url(self, key: str, expires_s: int) -> str | None:
        self.path_of(key)
        return None


class _Bounded(io.RawIOBase):
    """At most ``left`` bytes of ``stream`` from where it stands: a range of a file."""

    def __init__(self, stream: BinaryIO, left: int):
        self.stream, self.left = stream, left

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        wanted = min(len(buffer), self.left)
        if wanted <= 0:
            return 0
        data = self.stream.read(wanted)
        buffer[:len(data)] = data
        self.left -= len(data)
        return len(data)

    def close(self) -> None:
        self.stream.close()
        super().close()


def _fsync_dir(directory: Path) -> None:
    """The rename itself on disk too, so the object survives a crash of the machine."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
