"""A file as a ``multipart/form-data`` body that is read from disk as it is sent, never held
whole in memory, with its length known up front (Django reads a body by its Content-Length)."""

from __future__ import annotations

import mimetypes
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Progress = Callable[[int, int | None], None]  # (bytes done, bytes in all or None)


class MultipartFile:
    """The body: the form ``fields``, then the file under the field ``file``. Has ``read``
    and ``__len__``, which is what requests streams with a Content-Length."""

    def __init__(self, path: Path, fields: dict[str, str], *, progress: Progress | None = None):
        self.boundary = f"orch-{uuid.uuid4().hex}"
        self.progress = progress
        head = b"".join(self._field(name, value) for name, value in fields.items())
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        head += (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                 f"filename=\"{_quoted(path.name)}\"\r\nContent-Type: {kind}\r\n\r\n").encode()
        tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.file_size = os.path.getsize(path)
        self.size = len(head) + self.file_size + len(tail)
        self.parts: list[bytes | BinaryIO] = [head, path.open("rb"), tail]
        self.sent_file = 0
        self._index = 0
        self._offset = 0

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self.size

    def _field(self, name: str, value: str) -> bytes:
        return (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"{_quoted(name)}\""
                f"\r\n\r\n{value}\r\n").encode()

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for -1) of the body."""
        out = bytearray()
        while self._index < len(self.parts) and (size < 0 or len(out) < size):
            part = self.parts[self._index]
            want = -1 if size < 0 else size - len(out)
            if isinstance(part, bytes):
                piece = part[self._offset:] if want < 0 else part[self._offset:self._offset + want]
                self._offset += len(piece)
                done = self._offset >= len(part)
            else:
                piece = part.read(want)
                self.sent_file += len(piece)
                if self.progress is not None and piece:
                    self.progress(self.sent_file, self.file_size)
                done = not piece or (want < 0)
            out += piece
            if done:
                if not isinstance(part, bytes):
                    part.close()
                self._index += 1
                self._offset = 0
        return bytes(out)

    def close(self) -> None:
        for part in self.parts:
            if not isinstance(part, bytes):
                part.close()


def _quoted(text: str) -> str:
    """A name for a header's quoted string: no quote, backslash or line break can end it."""
    return "".join("_" if ch in '"\\\r\n' else ch for ch in text)
