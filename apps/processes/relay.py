"""The relay: admission and the publish of job specs, off the request path (a transactional
outbox).

A create commits its process PENDING with its first event and answers; nothing of admission
or the broker is in the request. The relay, a thread of the control consumer
(``orchestration.relay_step``), then runs rounds:

1. admission on every pool with waiting processes (``admission.admit``: the pool's row lock,
   capacity, fair share; two relays at once cannot admit past capacity);
2. the publish of every admitted process still PENDING, a batch at a time: the batch's rows
   are locked (``FOR UPDATE SKIP LOCKED``: a second relay takes other rows, never the same),
   its specs sent on one channel and confirmed by the broker together
   (``spec_batches.SpecPublisher``), then the batch marked QUEUED with its events in one
   UPDATE, in the same transaction (``transitions.queued_mark``).

No spec is sent for a rolled-back row: the relay reads only committed ones. None is lost: a
process stays admitted PENDING until its spec is confirmed and marked, and every round
publishes what is so. A relay killed after the broker confirmed a batch and before its mark
committed leaves those processes PENDING: the next round sends their specs again, and the
worker's find-before-start (``workers.executors``: a job found by its name is not started
again) makes the second copy harmless.

A round starts when ``wake()`` is called by a transaction that commits (a create, an end that
frees a slot, a stop, a pool resumed), through PostgreSQL's LISTEN/NOTIFY, and at the latest
every RELAY_INTERVAL_S (SQLite has no NOTIFY: the timer alone).
"""

from __future__ import annotations

import logging
import select
import threading
from typing import Any

from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    close_old_connections,
    connection,
    connections,
    transaction,
)
from django.utils import timezone

from apps.processes.admission import admit_all
from apps.processes.models import Process
from apps.processes.spec_batches import SpecPublisher
from apps.processes.transitions import queued_mark
from workers.contract import State

log = logging.getLogger(__name__)

CHANNEL = "orch_relay"  # PostgreSQL's notification channel the relay listens on


def wake() -> None:
    """Ask the relay for a round once the current transaction commits (none if it rolls
    back): call it in the transaction that made something to admit or publish. Outside a
    transaction the relay hears it at once. On SQLite it does nothing: the relay's timer
    finds the work within RELAY_INTERVAL_S."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # PostgreSQL delivers it at commit, if any
            cursor.execute(f"NOTIFY {CHANNEL}")


def relay_round(publisher: SpecPublisher | None = None) -> int:
    """Admit on every pool, then publish every admitted process not yet QUEUED; returns how
    many were published. A broker that refuses leaves the rest for the next round."""
    admit_all()
    return publish_admitted(publisher)


def publish_admitted(publisher: SpecPublisher | None = None) -> int:
    """Publish the admitted PENDING processes, RELAY_BATCH at a time, oldest admission
    first, until none is left. Returns how many were published."""
    own = publisher is None
    publisher = publisher or SpecPublisher()
    sent = 0
    try:
        while True:
            try:
                done = publish_batch(publisher)
            except Exception as exc:  # the broker is away: the processes stay PENDING
                log.warning("job specs not published yet: %s", exc)
                return sent
            sent += done
            if done < settings.RELAY_BATCH:
                return sent
    finally:
        if own:
            publisher.close()


def publish_batch(publisher: SpecPublisher) -> int:
    """Lock a batch of admitted PENDING processes no other relay holds, send their specs and,
    once the broker confirmed them all, mark them QUEUED; one transaction. Returns how many.
    Raises (nothing marked) when the broker refuses or does not confirm."""
    with transaction.atomic():
        batch = list(
            Process.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(state=State.PENDING, admitted_at__isnull=False)
            .select_related("pipeline", "pipeline_version", "pipeline_version__pool")
            .prefetch_related("dataset_uses__dataset")  # the specs' inputs, in one query
            .order_by("admitted_at", "created_at")[:settings.RELAY_BATCH])
        if not batch:
            return 0
        publisher.publish(batch)
        batch_confirmed(batch)
        return len(queued_mark(batch, timezone.now()))


def batch_confirmed(batch: list[Process]) -> None:
    """Between the broker's confirms and the mark: a drill stops the relay here."""


class Relay:
    """The relay's loop, run in a thread of its own until ``stop()``."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="relay", daemon=True)
        self.listener: Any = None
        self._listener_wrapper: Any = None
        self.publisher = SpecPublisher()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                close_old_connections()
                relay_round(self.publisher)
            except (DatabaseError, InterfaceError) as exc:  # the next round comes soon
                log.warning("relay round skipped, the database is unavailable: %s", exc)
                connection.close()
            except Exception:
                log.exception("relay round failed")
            self.wait(settings.RELAY_INTERVAL_S)
        self.publisher.close()
        self._unlisten()
        connection.close()

    def wait(self, timeout: float) -> None:
        """Until a NOTIFY arrives, ``timeout`` passes or the relay is stopped."""
        listener = self._listen()
        if listener is None:
            self.stopping.wait(timeout)
            return
        try:
            if not listener.notifies:
                select.select([listener], [], [], timeout)
            listener.poll()
            listener.notifies.clear()
        except Exception as exc:  # the database went away: listen again next time
            log.warning("relay stopped listening: %s", exc)
            self._unlisten()
            self.stopping.wait(min(timeout, 1.0))

    def _listen(self):
        """The raw connection LISTENing on CHANNEL (its own, in autocommit), or None on a
        database without NOTIFY or that cannot be reached now."""
        if self.listener is not None or connection.vendor != "postgresql":
            return self.listener
        try:
            wrapper = connections.create_connection("default")
            wrapper.ensure_connection()
            raw = wrapper.connection
            raw.autocommit = True
            with raw.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
            self.listener, self._listener_wrapper = raw, wrapper
        except Exception as exc:
            log.warning("relay cannot listen now, on its timer meanwhile: %s", exc)
            self.listener = None
        return self.listener

    def _unlisten(self) -> None:
        wrapper = self._listener_wrapper
        self.listener, self._listener_wrapper = None, None
        if wrapper is not None:
            try:
                wrapper.close()
            except Exception as exc:
                log.debug("relay's listening connection not closed cleanly: %s", exc)
