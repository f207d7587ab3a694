"""The one interface every store of bytes implements (datasets in, outputs out), and what all
of them share: the rules a key follows and the reader that hashes what passes through it.

A store holds objects by key: ``put`` writes one whole (a reader sees the object complete or
not at all, never a part), ``open`` reads it or a range of it, ``stat`` says its size, ``delete``
removes it and ``url`` gives a link that reads it without credentials, where the store has such
links. Keys are relative paths with ``/`` between their parts; they come from the control plane
(``datasets/<uuid>``), never from a client as they are, and every store refuses one that could
leave its root.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import BinaryIO, Protocol

# Bytes read and written at a time: objects are streamed, never held whole in memory.
CHUNK_BYTES = 1024 * 1024
# A key's length at most (S3's own limit); a part of it that starts with this is a write in
# progress (FileStorage's partial file), never an object.
KEY_MAX_BYTES = 1024
PARTIAL_PREFIX = ".partial-"


class Readable(Protocol):
    """What ``put`` reads from: a file, a socket's stream, anything with ``read``."""

    def read(self, size: int = -1, /) -> bytes: ...


class StorageError(Exception):
    """A store could not do what was asked: the message says which object and why."""


class BadKey(StorageError, ValueError):
    """A key no store accepts: empty, absolute, with a ``..``, an empty part or a NUL."""


class ObjectMissing(StorageError, FileNotFoundError):
    """No object has this key."""


def checked_key(key: str) -> list[str]:
    """The parts of ``key``; BadKey when it is empty, absolute, too long, holds a NUL, an
    empty, ``.`` or ``..`` part, or names a partial write."""
    if not isinstance(key, str) or not key:
        raise BadKey(f"not a key: {key!r}")
    if "\0" in key:
        raise BadKey(f"a key must not contain a NUL character: {key!r}")
    if key.startswith("/"):
        raise BadKey(f"a key is relative to the store, not absolute: {key!r}")
    if len(key.encode("utf-8", errors="surrogatepass")) > KEY_MAX_BYTES:
        raise BadKey(f"a key is at most {KEY_MAX_BYTES} bytes: {key[:60]!r}...")
    parts = key.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise BadKey(f"a key's parts must not be empty, '.' or '..': {key!r}")
        if part.startswith(PARTIAL_PREFIX):
            raise BadKey(f"a key's part must not start with {PARTIAL_PREFIX!r}: {key!r}")
    return parts


def checked_range(start: int, end: int | None) -> None:
    """``start`` and ``end`` of ``open``: whole numbers, 0 <= start <= end."""
    if not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a whole number >= 0, not {start!r}")
    if end is not None and (not isinstance(end, int) or end < start):
        raise ValueError(f"end must be None or a whole number >= start ({start}), not {end!r}")


class HashingReader:
    """Reads ``source`` on and counts and hashes (SHA-256) every byte read through it.

    A read answers ``size`` bytes unless the source has ended: a stream may answer less
    (a socket's), and a short answer would read as the end to whoever reads this
    (s3transfer takes a short first part for the whole object)."""

    def __init__(self, source: Readable):
        self.source = source
        self.size = 0
        self._sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            data = self.source.read()
        else:
            parts, wanted = [], size
            while wanted > 0:
                part = self.source.read(wanted)
                if not part:
                    break
                parts.append(part)
                wanted -= len(part)
            data = b"".join(parts)
        self.size += len(data)
        self._sha256.update(data)
        return data

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()


class Storage(ABC):
    """A store of objects by key (see the module's docstring)."""

    @abstractmethod
    def put(self, key: str, fileobj: Readable) -> tuple[int, str]:
        """Store everything ``fileobj`` reads from here on under ``key`` (replacing what was
        there), read a chunk at a time; return its size and its SHA-256 (hex). Atomic: until
        it returns, readers see the old object or none, and a failed put leaves nothing."""

    @abstractmethod
    def open(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        """A binary stream of the object's bytes from ``start`` up to ``end`` (exclusive, as
        in a slice; None: to its end). ObjectMissing when there is no such object."""

    @abstractmethod
    def stat(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such object."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing one that is not there is no error."""

    @abstractmethod
    def url(self, key: str, expires_s: int) -> str | None:
        """A URL that reads the object without credentials for ``expires_s`` seconds, or None
        when this store has no such links (the control plane serves the bytes then)."""
