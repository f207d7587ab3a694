"""Job specs published a batch at a time on one channel, with publisher confirms: the relay's
sending half. On RabbitMQ the whole batch is sent and then its confirms awaited together (one
round trip per batch, not one per spec); on the embedded broker each send is a local insert.

A batch either returns with every spec confirmed, or raises: then any of its specs may or may
not have reached the broker, and the caller sends the whole batch again later (a worker's
find-before-start makes a second copy harmless)."""

from __future__ import annotations

import logging
import time
from typing import Any

from amqp.exceptions import MessageNacked
from django.conf import settings
from kombu import Producer

from apps.processes import messaging
from apps.processes.models import Process
from orchestration.celery import app
from workers.contract import TASK_SUBMIT

log = logging.getLogger(__name__)


class SpecPublisher:
    """Keeps one broker connection and channel between batches; a batch that fails drops
    them, and the next batch opens new ones (the broker may have restarted)."""

    def __init__(self) -> None:
        self.connection: Any = None
        self.channel: Any = None
        self.producer: Producer | None = None
        self.last_tag = 0  # the channel's delivery tags count every publish since it opened

    def publish(self, processes: list[Process]) -> None:
        """Send the signed job specs of ``processes``; returns once the broker has confirmed
        every one."""
        if not processes:
            return
        messages = [messaging.signed_spec(process) for process in processes]
        try:
            if not app.conf.broker_url.startswith(("amqp", "pyamqp")):  # the embedded broker
                for queue, envelope, process_id in messages:
                    app.send_task(TASK_SUBMIT, args=[envelope], queue=queue,
                                  **messaging.spec_send_options(process_id))
                return
            self._publish_confirmed(messages)
        except Exception:
            self.close()
            raise

    def _open(self) -> None:
        if self.channel is not None:
            return
        self.connection = app.connection_for_write()
        self.connection.ensure_connection(max_retries=1)
        channel = self.connection.channel()
        # The transport confirms each publish before the next one (confirm_publish): here the
        # batch goes out first and its confirms are awaited together. They are heard through
        # the channel's own handlers, whenever they arrive (during a queue's declaration too).
        channel.basic_publish = channel._basic_publish
        channel.events["basic_ack"].add(self._acked)
        channel.events["basic_nack"].add(self._nacked)
        channel.confirm_select()
        self.channel, self.last_tag = channel, 0
        self.unconfirmed: set[int] = set()
        self.refused = 0
        self.producer = Producer(channel)

    def _acked(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self.unconfirmed = {tag for tag in self.unconfirmed if tag > delivery_tag}
        else:
            self.unconfirmed.discard(delivery_tag)

    def _nacked(self, delivery_tag: int, multiple: bool) -> None:
        self.refused = delivery_tag
        self._acked(delivery_tag, multiple)

    def _publish_confirmed(self, messages: list[tuple[str, dict, str]]) -> None:
        self._open()
        first = self.last_tag + 1
        self.last_tag += len(messages)
        self.unconfirmed.update(range(first, self.last_tag + 1))
        for queue, envelope, process_id in messages:
            # No retry: a reconnect would put the rest on a channel that confirms nothing.
            app.send_task(TASK_SUBMIT, args=[envelope], queue=queue, producer=self.producer,
                          retry=False, **messaging.spec_send_options(process_id))
        deadline = time.monotonic() + settings.RELAY_CONFIRM_TIMEOUT_S
        while self.unconfirmed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self.unconfirmed)} job specs not confirmed in "
                                   f"{settings.RELAY_CONFIRM_TIMEOUT_S} s")
            try:
                self.connection.drain_events(timeout=left)
            except TimeoutError:
                continue
        if self.refused >= first:
            raise MessageNacked(f"the broker refused job spec {self.refused}")

    def close(self) -> None:
        connection, self.connection, self.channel, self.producer = (
            self.connection, None, None, None)
        if connection is not None:
            try:
                connection.release()
            except Exception as exc:  # already gone with the broker
                log.debug("relay's broker connection not closed cleanly: %s", exc)
