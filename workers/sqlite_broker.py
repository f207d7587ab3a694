"""The embedded broker: a kombu transport on one SQLite file, for set-ups with no server.

Why not kombu's file-system transport: its writer creates a message file before it writes it
and its reader takes no lock, so a reader can read an empty file, which kills the consumer and
loses the message (kombu #1551). Here every publish, claim and acknowledgement is one SQLite
transaction: a message is either whole in the file or not there at all.

Delivery is at least once, as on RabbitMQ. A consumer *claims* a message (the row stays, marked
with the consumer's identity) and deletes it only when the task acknowledges it. A rejected
message, the unacknowledged messages of a consumer that shuts down, and those of a consumer
that died (its process is gone) are made ready again, in their original order.

One file serves the processes of one machine: a consumer's liveness is read from its pid. A
claim older than ``visibility_timeout`` seconds (default one hour) is made ready again whatever
holds it, for files shared in ways that pid checks cannot see.

URL: ``sqlite:///absolute/path/broker.sqlite3``; the path may also come from the transport
option ``path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path
from queue import Empty
from typing import NamedTuple

from kombu.exceptions import ChannelError
from kombu.transport import virtual

SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    tag TEXT NOT NULL,
    payload TEXT NOT NULL,
    owner TEXT,               -- the consumer holding it, NULL while it is ready
    claimed_at REAL
);
CREATE INDEX IF NOT EXISTS message_ready ON message (queue, owner, id);
CREATE INDEX IF NOT EXISTS message_tag ON message (tag);
CREATE TABLE IF NOT EXISTS binding (
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    pattern TEXT NOT NULL,
    queue TEXT NOT NULL,
    PRIMARY KEY (exchange, routing_key, pattern, queue)
);
"""

class Binding(NamedTuple):
    """One row of an exchange's routing table, as kombu's exchange types read it."""

    routing_key: str
    pattern: str
    queue: str


# How often a consumer looks for messages held by consumers that died.
RECLAIM_EVERY_S = 5.0
DEFAULT_VISIBILITY_TIMEOUT_S = 3600.0


def _process_start(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (Linux), so that a pid reused by
    another process is not taken for the consumer that held a message. "" elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def this_consumer() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}"


def consumer_alive(owner: str) -> bool:
    """False only when ``owner`` is a process of this host that is provably gone."""
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # not ours to judge: the visibility timeout decides
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return not started or _process_start(pid) in ("", started)


def _private(path: Path) -> None:
    """The broker's file readable by its owner alone (every message passes through it).
    SQLite gives its -wal and -shm files the database file's mode; older ones are fixed too.

    An existing file is never opened here: closing any descriptor of a file drops every POSIX
    lock this process holds on it, the locks of its SQLite connections included (another
    thread's), and two processes then write the file at once and corrupt it. A missing file
    is created (exclusively: no connection of ours can have it open yet)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


class Store:
    """The SQLite file, one connection per thread (acknowledgements come from task threads)."""

    def __init__(self, path: str, visibility_timeout: float):
        self.path = path
        self.visibility_timeout = visibility_timeout
        self.owner = this_consumer()
        self._local = threading.local()
        self._last_reclaim = 0.0
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _private(Path(path))
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # Autocommit: every statement below is its own transaction.
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a published message survives a power cut
        db.execute("PRAGMA busy_timeout=30000")
        return db

    @property
    def db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():  # a forked child opens its own
            db = self._local.db = self._connect()
            self._local.pid = os.getpid()
        return db

    # --- messages ---------------------------------------------------------------------------

    def put(self, queue: str, message: dict) -> None:
        tag = message.get("properties", {}).get("delivery_tag", "")
        self.db.execute("INSERT INTO message (queue, tag, payload) VALUES (?, ?, ?)",
                        (queue, tag, json.dumps(message)))

    def claim(self, queue: str) -> dict | None:
        """The oldest ready message of ``queue``, now held by this consumer; None if none."""
        self._reclaim_now_and_then()
        ready = self.db.execute(
            "SELECT 1 FROM message WHERE queue = ? AND owner IS NULL LIMIT 1", (queue,)
        ).fetchone()
        if ready is None:  # the common case costs a read, no write lock
            return None
        row = self.db.execute(
            "UPDATE message SET owner = ?, claimed_at = ? WHERE id = ("
            " SELECT id FROM message WHERE queue = ? AND owner IS NULL ORDER BY id LIMIT 1)"
            " RETURNING payload", (self.owner, time.time(), queue),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def ack(self, tag: str) -> None:
        self.db.execute("DELETE FROM message WHERE tag = ? AND owner = ?", (tag, self.owner))

    def release(self, tag: str) -> None:
        """Ready again, in its original place in the queue."""
        self.db.execute("UPDATE message SET owner = NULL, claimed_at = NULL"
                        " WHERE tag = ? AND owner = ?", (tag, self.owner))

    def size(self, queue: str) -> int:
        return self.db.execute("SELECT count(*) FROM message WHERE queue = ? AND owner IS NULL",
                               (queue,)).fetchone()[0]

    def purge(self, queue: str) -> int:
        return self.db.execute("DELETE FROM message WHERE queue = ? AND owner IS NULL",
                               (queue,)).rowcount

    def _reclaim_now_and_then(self) -> None:
        now = time.time()
        if now - self._last_reclaim < RECLAIM_EVERY_S:
            return
        self._last_reclaim = now
        owners = [row[0] for row in self.db.execute(
            "SELECT DISTINCT owner FROM message WHERE owner IS NOT NULL")]
        for owner in owners:
            if owner != self.owner and not consumer_alive(owner):
                self.db.execute("UPDATE message SET owner = NULL, claimed_at = NULL"
                                " WHERE owner = ?", (owner,))
        self.db.execute("UPDATE message SET owner = NULL, claimed_at = NULL"
                        " WHERE owner IS NOT NULL AND claimed_at < ?",
                        (now - self.visibility_timeout,))

    # --- bindings (kept in the file: a fanout reaches queues bound by other processes) --------

    def bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO binding VALUES (?, ?, ?, ?)",
                        (exchange, routing_key, pattern, queue))

    def unbind(self, exchange: str, queue: str) -> None:
        self.db.execute("DELETE FROM binding WHERE exchange = ? AND queue = ?", (exchange, queue))

    def bindings(self, exchange: str) -> list[tuple[str, str, str]]:
        return self.db.execute("SELECT routing_key, pattern, queue FROM binding"
                               " WHERE exchange = ?", (exchange,)).fetchall()


class QoS(virtual.QoS):
    """Acknowledgements delete the claimed row; rejections and restores make it ready again."""

    def ack(self, delivery_tag):
        self.channel.store.ack(delivery_tag)
        super().ack(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        if requeue:
            self.channel.store.release(delivery_tag)
        else:
            self.channel.store.ack(delivery_tag)
        self._quick_ack(delivery_tag)

    def restore_unacked(self):
        self._flush()
        errors = []
        while self._delivered:
            tag, _message = self._delivered.popitem()
            try:
                self.channel.store.release(tag)
            except sqlite3.Error as exc:  # the next reclaim frees it: this consumer is gone
                errors.append((exc, tag))
        return errors


class Channel(virtual.Channel):
    QoS = QoS
    supports_fanout = True

    @property
    def store(self) -> Store:
        return self.connection.store

    def _put(self, queue, message, **kwargs):
        self.store.put(queue, message)

    def _get(self, queue, timeout=None):
        message = self.store.claim(queue)
        if message is None:
            raise Empty()
        return message

    def _size(self, queue):
        return self.store.size(queue)

    def _purge(self, queue):
        return self.store.purge(queue)

    def _delete(self, queue, exchange, *meta, **kwargs):
        self.store.unbind(exchange, queue)
        self._purge(queue)

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        self.store.bind(exchange, routing_key or "", pattern or "", queue or "")

    def get_table(self, exchange):
        return [Binding(*row) for row in self.store.bindings(exchange)]

    def _lookup(self, exchange, routing_key, default=None):
        """The queues a message goes to. Celery names a queue, its direct exchange and its
        routing key alike, so a task message published before any consumer bound its queue
        still reaches that queue. A topic or fanout message nobody is bound to is dropped, as
        RabbitMQ drops it (Celery's worker events): kept, it would pile up unread."""
        if not exchange:
            return [routing_key]
        exchange_type = self.typeof(exchange)
        try:
            found = exchange_type.lookup(self.get_table(exchange), exchange, routing_key,
                                         default)
        except KeyError:
            found = []
        if found or exchange_type.type != "direct":
            return list(found)
        return [routing_key or exchange]

    def _put_fanout(self, exchange, message, routing_key, **kwargs):
        for _key, _pattern, queue in self.store.bindings(exchange):
            self._put(queue, message)


class Transport(virtual.Transport):
    Channel = Channel
    polling_interval = 0.1
    # kombu's base infers its attributes' types from their values (None, a one-error tuple);
    # a transport overrides them with its own, as kombu's own transports do.
    default_port = 0  # type: ignore[assignment]
    driver_type = "sqlite"
    driver_name = "sqlite3"
    implements = virtual.Transport.implements.extend(
        asynchronous=False, exchange_type=frozenset(["direct", "topic", "fanout"]))
    # A file locked past busy_timeout (or a full disk) is a connection error: Celery hands its
    # messages back and reconnects instead of dying with them.
    connection_errors = (  # type: ignore[assignment]
        *virtual.Transport.connection_errors, sqlite3.OperationalError)

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        options = client.transport_options
        path = options.get("path") or client.virtual_host
        if not path or path == "/":
            raise ChannelError("the sqlite broker needs a file: sqlite:///path/broker.sqlite3")
        self.store = Store(path, float(options.get("visibility_timeout",
                                                   DEFAULT_VISIBILITY_TIMEOUT_S)))

    def driver_version(self):
        return sqlite3.sqlite_version
