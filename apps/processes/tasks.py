"""The control plane's Celery tasks: thin, each calls one service. Registered under the wire
names of ``workers.contract`` so workers send to them without importing this code."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready
from django.db import DatabaseError, InterfaceError

from apps.pipelines.services import pipelines_load, worker_heartbeat
from apps.processes.events import events_apply
from apps.processes.polling import outbox_sweep, pools_poll
from workers.contract import TASK_APPLY_EVENTS, TASK_HEARTBEAT, Event, Heartbeat

log = logging.getLogger(__name__)

# A database outage delays events, it never drops them: the task is retried with backoff, and
# its message is acknowledged only once the events are committed (acks_late).
DB_RETRY = {
    "autoretry_for": (DatabaseError, InterfaceError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "max_retries": None,
}


@shared_task(name=TASK_APPLY_EVENTS, **DB_RETRY)
def apply_events(events: list[dict]) -> int:
    return events_apply([Event.from_dict(e) for e in events])


@shared_task(name=TASK_HEARTBEAT, ignore_result=True)
def heartbeat(beat: dict) -> None:
    try:
        worker_heartbeat(Heartbeat(**beat))
    except (DatabaseError, InterfaceError) as exc:  # the next beat comes in a few seconds
        log.warning("heartbeat of %s@%s not recorded: %s", beat.get("pool"), beat.get("host"),
                    exc)


@shared_task(name="orchestration.control.poll_pools", acks_late=False)
def poll_pools() -> int:
    """One round of the poll loop. A round the database cannot serve is skipped: the next one
    comes in POLL_INTERVAL_S and asks about everything again."""
    try:
        outbox_sweep()
        return pools_poll()
    except (DatabaseError, InterfaceError) as exc:
        log.warning("poll round skipped, the database is unavailable: %s", exc)
        return 0


@worker_ready.connect
def load_pipelines_at_start(**kwargs) -> None:
    """The control plane loads the pipeline files whenever it starts."""
    pipelines_load()
