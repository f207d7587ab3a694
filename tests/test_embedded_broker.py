"""The embedded broker (one SQLite file) under real concurrency: producer and consumer
processes at once, producers killed mid-publish, consumers killed holding messages. Every
message whose publish returned is delivered; none is delivered twice unless its consumer died
before acknowledging it."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.broker_settings import celery_config

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "pool.stress"


class Broker:
    def __init__(self, folder: Path):
        self.folder = folder
        self.file = folder / "broker.sqlite3"
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "tests.broker_stress", *args], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=open(self.folder / "err", "a"))  # noqa: SIM115
        self.procs.append(proc)
        return proc

    def producer(self, name: str, count: int) -> subprocess.Popen:
        return self.start("produce", str(self.file), QUEUE, name, str(count),
                          str(self.folder / f"published-{name}"))

    def consumer(self, name: str, hold: bool = False) -> subprocess.Popen:
        return self.start("consume", str(self.file), QUEUE, str(self.folder / f"consumed-{name}"),
                          *(["--hold"] if hold else []))

    def lines(self, pattern: str) -> list[str]:
        """The ids recorded in the files matching ``pattern`` ("consumed-*", "published-p")."""
        return [line for path in sorted(self.folder.glob(pattern))
                for line in path.read_text().splitlines()]

    def wait_consumed(self, expected: int, timeout: float = 240) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            consumed = self.lines("consumed-*")
            if len(consumed) >= expected:
                return consumed
            dead = [p for p in self.procs if p.poll() not in (None, 0, -signal.SIGKILL)]
            assert not dead, (self.folder / "err").read_text()[-3000:]
            time.sleep(0.2)
        return self.lines("consumed-*")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=30)


@pytest.fixture
def broker(tmp_path):
    broker = Broker(tmp_path)
    yield broker
    for proc in broker.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_many_producers_and_consumers_at_once_deliver_every_message_exactly_once(broker):
    producers = [broker.producer(f"p{n}", 1000) for n in range(4)]
    consumers = [broker.consumer(f"c{n}") for n in range(3)]
    for proc in producers:
        assert proc.wait(timeout=240) == 0, (broker.folder / "err").read_text()[-3000:]
    published = broker.lines("published-*")
    assert len(published) == 4000

    consumed = broker.wait_consumed(4000)
    time.sleep(1)  # anything delivered twice would show up now
    consumed = broker.lines("consumed-*")
    broker.stop_all()

    assert all(proc.returncode == 0 for proc in consumers), "a consumer died"
    twice = [m for m, n in collections.Counter(consumed).items() if n > 1]
    assert not twice, f"{len(twice)} messages delivered twice, e.g. {twice[:5]}"
    assert sorted(consumed) == sorted(published)
    # all three consumers took part: the claims really raced
    assert all(broker.lines(f"consumed-c{n}") for n in range(3))


def test_producers_killed_mid_publish_leave_no_half_message(broker):
    consumers = [broker.consumer(f"c{n}") for n in range(2)]
    producers = [broker.producer(f"p{n}", 100_000) for n in range(3)]
    deadline = time.monotonic() + 60
    while len(broker.lines("published-*")) < 600 and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in producers:  # each one in the middle of its stream
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    published = broker.lines("published-*")
    assert len(published) >= 600, "the producers did not get going"

    # Every publish that returned is delivered. A message whose publish was cut off by the
    # kill may or may not have been stored (its id is not recorded): either is fine, a torn
    # message is not, and a consumer never dies on one.
    consumed = broker.wait_consumed(len(published))
    time.sleep(2)
    consumed = broker.lines("consumed-*")
    broker.stop_all()
    assert all(proc.returncode == 0 for proc in consumers), "a consumer died"
    assert set(published) <= set(consumed)
    assert len(consumed) == len(set(consumed))
    assert len(consumed) - len(published) <= len(producers)


def test_messages_held_by_a_killed_consumer_go_to_another(broker):
    broker.producer("p", 20).wait(timeout=60)
    holder = broker.consumer("holder", hold=True)
    broker.wait_consumed(5)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    held = broker.lines("consumed-holder")
    assert len(held) == 5  # its prefetch: it claimed five and acknowledged none

    broker.consumer("rescuer")
    rescued = broker.wait_consumed(25)
    broker.stop_all()
    assert sorted(broker.lines("consumed-rescuer")) == sorted(broker.lines("published-*"))
    assert set(held) <= set(rescued)


def test_messages_held_by_a_consumer_that_shuts_down_are_handed_back_at_once(broker):
    broker.producer("p", 10).wait(timeout=60)
    holder = broker.consumer("holder", hold=True)
    broker.wait_consumed(5)
    holder.terminate()
    assert holder.wait(timeout=30) == 0

    broker.consumer("next")
    broker.wait_consumed(15, timeout=20)  # well before any reclaim or visibility timeout
    broker.stop_all()
    assert sorted(broker.lines("consumed-next")) == sorted(broker.lines("published-*"))


def test_the_file_system_broker_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="kombu #1551"):
        celery_config({"ORCH_BROKER_URL": "filesystem://"})


def test_the_embedded_broker_file_lives_in_the_project_unless_named(tmp_path):
    options = celery_config({})["broker_transport_options"]
    assert options["path"] == str(ROOT / "var" / "broker.sqlite3")
    named = celery_config({"ORCH_BROKER_URL": f"sqlite:///{tmp_path}/b.sqlite3"})
    assert named["broker_transport_options"]["path"] == f"{tmp_path}/b.sqlite3"


def test_a_topic_message_nobody_is_bound_to_is_dropped_not_kept(tmp_path):
    """Celery's worker events go to a topic exchange nobody consumes: kept, they would pile up
    in the file for ever. A task message to a queue not yet bound is kept for its queue."""
    from kombu import Connection, Exchange, Producer

    config = celery_config({"ORCH_BROKER_URL": f"sqlite:///{tmp_path}/b.sqlite3"})
    with Connection(config["broker_url"],
                    transport_options=config["broker_transport_options"]) as conn:
        producer = Producer(conn.channel())
        events = Exchange("celeryev", type="topic")
        producer.publish({"type": "worker-heartbeat"}, exchange=events,
                         routing_key="worker.heartbeat", declare=[events])
        tasks = Exchange("pool.later", type="direct")
        producer.publish({"task": "x"}, exchange=tasks, routing_key="pool.later",
                         declare=[tasks])
    with sqlite3.connect(tmp_path / "b.sqlite3") as db:
        queues = db.execute("SELECT queue, count(*) FROM message GROUP BY queue").fetchall()
    assert queues == [("pool.later", 1)]


def test_a_new_connection_keeps_the_locks_another_holds_on_the_file(tmp_path):
    """A worker opens connections to the file at any time (heartbeats, reconnects). Opening
    one must not drop the lock its other connections hold: closing any descriptor of a file
    drops all of a process's POSIX locks on it, and the next process that closes its last
    connection then believes it is the file's last user, checkpoints and deletes the
    write-ahead log under this one: "disk I/O error", then a malformed file, seen after a
    stack restart."""
    from workers.sqlite_broker import Store

    path = str(tmp_path / "b.sqlite3")
    holder = Store(path, visibility_timeout=60)
    holder.put("q", {"properties": {"delivery_tag": "t1"}, "body": "one"})
    Store(path, visibility_timeout=60)  # a second connection of the same process
    subprocess.run([sys.executable, "-c",
                    "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
                    "db.execute('SELECT count(*) FROM message').fetchone(); db.close()",
                    path], check=True, timeout=30)

    assert Path(path + "-wal").exists()  # still this process's: nobody checkpointed it away
    holder.put("q", {"properties": {"delivery_tag": "t2"}, "body": "two"})
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert check.execute("SELECT count(*) FROM message").fetchone() == (2,)
