"""The raw-Celery baseline: a trivial task with the reliable settings our workers use
(``workers.broker_settings.celery_config``: acks_late, reject_on_worker_lost, prefetch 1,
publisher confirms) on the same broker. Each task answers with one message on a queue of its own, as
our worker answers a job spec with an event message, so "done" is seen end to end."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from celery import Celery
from kombu import Connection, Consumer, Queue

from workers.broker_settings import celery_config

TASK_QUEUE = "bench.baseline"
DONE_QUEUE = "bench.baseline.done"
TASK_NOOP = "bench.baseline.noop"
TASK_DONE = "bench.baseline.done"

app = Celery("bench-baseline")
app.conf.update(celery_config())


@app.task(name=TASK_NOOP)
def noop(number: int) -> None:
    app.send_task(TASK_DONE, args=[number], queue=DONE_QUEUE)


def purge(broker_url: str) -> None:
    with Connection(broker_url) as conn:
        channel = conn.channel()
        for name in (TASK_QUEUE, DONE_QUEUE):
            Queue(name, channel=channel).declare()
            channel.queue_purge(name)


def run(broker_url: str, count: int, clients: int = 8, timeout: float = 120) -> dict:
    """Publish ``count`` tasks from ``clients`` threads and wait for every answer."""
    app.conf.update(celery_config({"ORCH_BROKER_URL": broker_url}))
    seen = 0
    done = threading.Event()
    with Connection(broker_url) as conn:
        queue = Queue(DONE_QUEUE, channel=conn.default_channel)
        queue.declare()

        def on_message(body, message):
            nonlocal seen
            message.ack()
            seen += 1
            if seen >= count:
                done.set()

        with Consumer(conn, queues=[queue], callbacks=[on_message], prefetch_count=100):
            started = time.perf_counter()

            def publish(numbers: range) -> None:
                for number in numbers:
                    app.send_task(TASK_NOOP, args=[number], queue=TASK_QUEUE)

            share = -(-count // clients)
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(publish, [range(i, min(i + share, count))
                                        for i in range(0, count, share)]))
            published = time.perf_counter() - started
            deadline = time.monotonic() + timeout
            while not done.is_set():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"raw Celery: {seen} of {count} tasks done in {timeout} s")
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=1)
            elapsed = time.perf_counter() - started
    return {"tasks": count, "seconds": elapsed, "per_second": count / elapsed,
            "publish_seconds": published}
