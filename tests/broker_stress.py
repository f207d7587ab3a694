"""Producers and consumers of the embedded broker, each a process of its own, for
tests/test_embedded_broker.py. They go through kombu with the settings Celery gets from
``workers.broker_settings.celery_config`` (the product's transport and options, nothing else).

  python -m tests.broker_stress produce BROKER_FILE QUEUE NAME COUNT RECORD_FILE
      publishes NAME-0 .. NAME-<COUNT-1>; after each publish returns, appends the id to RECORD
  python -m tests.broker_stress consume BROKER_FILE QUEUE RECORD_FILE [--hold]
      consumes until stopped; appends each id to RECORD, then acknowledges it. With --hold it
      records ids but never acknowledges (a consumer that dies holding its messages)
"""

from __future__ import annotations

import contextlib
import signal
import sys

from kombu import Connection, Consumer, Exchange, Producer, Queue

from workers.broker_settings import celery_config


def connection(broker_file: str) -> Connection:
    config = celery_config({"ORCH_BROKER_URL": f"sqlite:///{broker_file}"})
    return Connection(config["broker_url"],
                      transport_options=config["broker_transport_options"])


def queue_of(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def produce(broker_file: str, queue: str, name: str, count: int, record: str) -> None:
    with connection(broker_file) as conn, open(record, "a", buffering=1) as out:
        producer = Producer(conn.channel())
        for n in range(count):
            message_id = f"{name}-{n}"
            producer.publish({"id": message_id}, exchange=queue_of(queue).exchange,
                             routing_key=queue, declare=[queue_of(queue)], serializer="json")
            out.write(message_id + "\n")


def consume(broker_file: str, queue: str, record: str, hold: bool = False) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    with connection(broker_file) as conn, open(record, "a", buffering=1) as out:
        channel = conn.channel()
        channel.basic_qos(0, 1 if not hold else 5, False)

        def on_message(body, message):
            out.write(body["id"] + "\n")
            if not hold:
                message.ack()

        with Consumer(channel, [queue_of(queue)], callbacks=[on_message]):
            while not stop:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.5)
        channel.close()  # hands back what it holds, unacknowledged


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "produce":
        produce(args[0], args[1], args[2], int(args[3]), args[4])
    else:
        consume(args[0], args[1], args[2], hold="--hold" in args)
