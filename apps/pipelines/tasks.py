"""The control consumer's own heartbeat: recorded when the consumer handles the message that
its ConsumerHeartbeatStep (orchestration/heartbeats.py) sent to the ``control`` queue."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import DatabaseError, InterfaceError

from apps.pipelines.models import ServiceHeartbeat
from apps.pipelines.services import service_heartbeat
from workers.contract import TASK_CONSUMER_HEARTBEAT

log = logging.getLogger(__name__)


@shared_task(name=TASK_CONSUMER_HEARTBEAT, ignore_result=True, acks_late=False)
def consumer_heartbeat() -> None:
    try:
        service_heartbeat(ServiceHeartbeat.CONTROL)
    except (DatabaseError, InterfaceError) as exc:  # the next heartbeat comes soon
        log.warning("control consumer heartbeat not recorded: %s", exc)
