"""The control plane's Celery tasks: thin, each calls one service. Registered under the wire
names of ``workers.contract`` so workers send to them without importing this code."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from celery.exceptions import Reject
from celery.signals import worker_ready
from django.db import DatabaseError, InterfaceError

from apps.pipelines.services import pipelines_load, worker_heartbeat_receive
from apps.processes.events import events_receive
from apps.processes.lifecycle import retention_due
from apps.processes.polling import pools_poll, specs_resend
from apps.webhooks.services import deliveries_send
from workers.contract import TASK_APPLY_EVENTS, TASK_HEARTBEAT, TASK_HOUSEKEEPING, TASK_POLL_POOLS
from workers.signing import master_keys

log = logging.getLogger(__name__)

# How long a consumer thread waits before it hands back events the database refused.
DB_REQUEUE_DELAY_S = 2.0


@shared_task(name=TASK_APPLY_EVENTS)
def apply_events(envelope: dict) -> int:
    """A worker's signed events (``workers.events``); one not believed is counted, never
    applied (``events_receive``). A database outage delays events, it never drops them: the
    message is acknowledged only once the events are committed (acks_late), and events the
    database refused go back to the queue as they are. Not Celery's retry: that publishes a
    copy, and when the broker is away too it gives the message up."""
    try:
        return events_receive(envelope)
    except (DatabaseError, InterfaceError) as exc:
        log.warning("events not applied, the database is unavailable; requeued: %s", exc)
        time.sleep(DB_REQUEUE_DELAY_S)
        raise Reject(str(exc), requeue=True) from None


@shared_task(name=TASK_HEARTBEAT, ignore_result=True)
def heartbeat(envelope: dict) -> None:
    """A worker's signed heartbeat (``workers.heartbeat``)."""
    try:
        worker_heartbeat_receive(envelope)
    except (DatabaseError, InterfaceError) as exc:  # the next beat comes in a few seconds
        log.warning("a worker's heartbeat not recorded: %s", exc)


@shared_task(name=TASK_POLL_POOLS, acks_late=False)
def poll_pools() -> int:
    """One round of the poll loop: send again the specs that waited QUEUED too long, then
    poll. (Admission and the first publish are the relay's: apps.processes.relay.) A round
    the database cannot serve is skipped: the next one comes in POLL_INTERVAL_S and asks
    about everything again."""
    try:
        specs_resend()
        return pools_poll()
    except (DatabaseError, InterfaceError) as exc:
        log.warning("poll round skipped, the database is unavailable: %s", exc)
        return 0


@shared_task(name=TASK_HOUSEKEEPING, acks_late=False, ignore_result=True)
def housekeeping() -> None:
    """What the beat asks for every few seconds besides polls: webhook deliveries that are
    due, and retention when it is due. Skipped when the database cannot serve it; the next
    round comes soon."""
    try:
        deliveries_send()
        retention_due()
    except (DatabaseError, InterfaceError) as exc:
        log.warning("housekeeping skipped, the database is unavailable: %s", exc)


@worker_ready.connect
def load_pipelines_at_start(**kwargs) -> None:
    """The control plane loads the pipeline files whenever it starts, and makes its signing
    key file if there is none yet: a worker on this machine derives its keys from it before
    any run is sent (the quick start waits for its heartbeat)."""
    pipelines_load()
    master_keys(create=True)
