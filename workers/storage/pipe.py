"""A put fed by pushes: for a producer that is handed bytes a chunk at a time (a web server's
upload handler) rather than one that can be read from.

``Storage.put`` reads; this runs it in a thread of its own that reads what ``write`` pushes,
through a short queue (at most QUEUE_CHUNKS chunks wait: memory stays bounded and a slow store
slows the producer down). ``finish`` ends the object and answers the put's size and SHA-256;
``abort`` makes the put fail, so it leaves nothing (its own promise). The bytes are written
once, straight to the store, while they arrive.
"""

from __future__ import annotations

import contextlib
import queue
import threading

from .base import Storage, StorageError

# Chunks waiting between the producer and the store, at most.
QUEUE_CHUNKS = 4
# A put that has been handed nothing for this long gives up (a producer that vanished
# without aborting must not hold a thread for ever).
STALL_S = 600.0
_END = b""


class PipeAborted(Exception):
    """The producer gave up: the put must leave nothing."""


class PutPipe:
    def __init__(self, storage: Storage, key: str, *, stall_s: float = STALL_S):
        self.key = key
        self._storage = storage
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._stall_s = stall_s
        self._result: tuple[int, str] | None = None
        self._error: BaseException | None = None
        self._ended = False
        self._thread = threading.Thread(target=self._put, name=f"put {key}", daemon=True)
        self._thread.start()

    # --- the producer's side ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Hand ``data`` to the store (blocks while the queue is full)."""
        if data:
            self._send(bytes(data))

    def finish(self) -> tuple[int, str]:
        """End the object: once the store has it whole, its size and SHA-256. StorageError
        (or what the store raised) when it failed: then it left nothing."""
        self._send(_END)
        self._ended = True
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None  # noqa: S101 - the thread ended without an error
        return self._result

    def abort(self) -> None:
        """Give up: the put fails and leaves nothing. Harmless once finished or failed."""
        if not self._ended:
            self._ended = True
            while self._thread.is_alive():
                try:
                    self._chunks.put(None, timeout=0.1)
                    break
                except queue.Full:  # the store is slow: make room, it is all dropped anyway
                    self._drop_one()
            self._thread.join()

    def _send(self, item: bytes) -> None:
        if self._ended:
            raise StorageError(f"{self.key!r}: the put has ended")
        while True:
            if not self._thread.is_alive():  # the store failed part-way
                self._ended = True
                raise self._error or StorageError(f"{self.key!r}: the put stopped")
            try:
                self._chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _drop_one(self) -> None:
        with contextlib.suppress(queue.Empty):
            self._chunks.get_nowait()

    # --- the store's side (its thread) ----------------------------------------------------

    def _put(self) -> None:
        try:
            self._result = self._storage.put(self.key, _QueueReader(self._chunks, self._stall_s))
        except BaseException as exc:  # kept for the producer, which raises it
            self._error = exc


class _QueueReader:
    """What the put reads: the chunks pushed, until the end (or an abort, which raises)."""

    def __init__(self, chunks: queue.Queue[bytes | None], stall_s: float):
        self._chunks, self._stall_s = chunks, stall_s
        self._held = b""
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        while not self._ended and (size < 0 or len(self._held) < size):
            try:
                chunk = self._chunks.get(timeout=self._stall_s)
            except queue.Empty:
                raise PipeAborted(f"nothing arrived for {self._stall_s:.0f} s") from None
            if chunk is None:
                raise PipeAborted("the producer gave up")
            if chunk is _END or not chunk:
                self._ended = True
                break
            self._held += chunk
        if size < 0:
            data, self._held = self._held, b""
        else:
            data, self._held = self._held[:size], self._held[size:]
        return data
