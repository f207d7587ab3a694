"""The control plane's own heartbeats, for GET /api/health/ and ``manage.py health``.

- The control consumer sends itself a heartbeat message on the ``control`` queue every
  HEARTBEAT_INTERVAL_S; it is recorded only when a consumer handles it, so a consumer that
  stopped consuming goes silent even if its process lives on.
- The beat writes its heartbeat to the database itself, from its scheduler: through the queue,
  a dead consumer would make the beat look dead too.

Nothing here imports Django models at import time: this module is loaded with the Celery app,
before Django is set up.
"""

from __future__ import annotations

import logging
import time

from celery.beat import PersistentScheduler
from django.conf import settings

from workers.contract import CONTROL_QUEUE, TASK_CONSUMER_HEARTBEAT
from workers.heartbeat import RepeatingStep

log = logging.getLogger(__name__)


class ConsumerHeartbeatStep(RepeatingStep):
    """In the control consumer: a heartbeat message to its own queue every interval."""

    def interval_s(self) -> float:
        return settings.HEARTBEAT_INTERVAL_S

    def tick(self, worker) -> None:
        # Expires: a heartbeat handled long after it was sent would say nothing about now.
        try:
            worker.app.send_task(TASK_CONSUMER_HEARTBEAT, queue=CONTROL_QUEUE,
                                 expires=settings.WORKER_TIMEOUT_S)
        except Exception as exc:  # the broker is away: the next beat tries again
            log.warning("control consumer heartbeat not sent: %s", exc)


class HeartbeatScheduler(PersistentScheduler):
    """celery beat's persistent scheduler that also records the beat's own heartbeat in the
    database every HEARTBEAT_INTERVAL_S (set as CELERY_BEAT_SCHEDULER)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.next_heartbeat = 0.0

    def tick(self, *args, **kwargs):
        now = time.monotonic()
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + settings.HEARTBEAT_INTERVAL_S
            record_beat_heartbeat()
        # Wake up in time for the next heartbeat even when no task is due before it.
        return min(super().tick(*args, **kwargs),
                   max(self.next_heartbeat - time.monotonic(), 0.1))


def record_beat_heartbeat() -> None:
    from django.db import DatabaseError, InterfaceError, close_old_connections

    from apps.pipelines.models import ServiceHeartbeat
    from apps.pipelines.services import service_heartbeat

    close_old_connections()  # a connection broken by a database restart is dropped, not reused
    try:
        service_heartbeat(ServiceHeartbeat.BEAT)
    except (DatabaseError, InterfaceError) as exc:  # the next beat tries again
        log.warning("beat heartbeat not recorded: %s", exc)
