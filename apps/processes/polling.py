"""The poll loop, run by the beat every POLL_INTERVAL_S: one poll message per pool (or per
host of a host-bound pool) listing every handle the control plane still waits on, and the
outbox sweep that publishes again what was committed but never reached the broker."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.pipelines.models import Pool
from apps.processes import messaging
from apps.processes.models import Process
from apps.processes.services import process_publish
from workers.contract import (
    HOST_BOUND_TARGETS,
    POLL_BATCH_MAX,
    POLLED_STATES,
    PollRequest,
    State,
)
from workers.signing import max_age_s

log = logging.getLogger(__name__)

REPUBLISH_BATCH = 500


def pools_poll() -> int:
    """Send this round's poll messages; returns how many were sent."""
    processes = (
        Process.objects.filter(state__in=POLLED_STATES)
        .exclude(handle="")
        .select_related("pipeline_version")
        .order_by("id")  # the same batches each round: a worker tells a repeated poll by them
        .only("id", "handle", "host", "pool", "target", "log_size", "log_cursor",
              "stop_requested_at", "started_at", "submitted_at", "pipeline_version__resources")
    )
    groups: dict[tuple[str, str, str | None], list] = defaultdict(list)
    for process in processes.iterator(chunk_size=2000):
        host = process.host or None if process.target in HOST_BOUND_TARGETS else None
        groups[(process.pool, process.target, host)].append(messaging.poll_item(process))
    pool_settings = dict(Pool.objects.values_list("name", "settings"))
    sent = 0
    for (pool, target, host), items in groups.items():
        for start in range(0, len(items), POLL_BATCH_MAX):
            request = PollRequest(pool=pool, target=target, host=host,
                                  items=items[start:start + POLL_BATCH_MAX],
                                  pool_settings=pool_settings.get(pool, {}))
            messaging.send_poll(request)
            sent += 1
    return sent


def specs_resend() -> int:
    """Sign and send again the job specs of processes still QUEUED after half the age a worker
    accepts (ORCH_SIGNATURE_MAX_AGE_S): a pool down for days must not make its waiting runs
    stale. A second copy is harmless: submission finds the job it already started."""
    cutoff = timezone.now() - timedelta(seconds=max_age_s("spec") / 2)
    waiting = (Process.objects.filter(state=State.QUEUED)
               .annotate(last_sent=Coalesce("spec_sent_at", "queued_at"))
               .filter(last_sent__lt=cutoff)
               .select_related("pipeline", "pipeline_version", "pipeline_version__pool")
               .order_by("last_sent")[:REPUBLISH_BATCH])
    sent = 0
    for process in waiting:
        try:
            messaging.send_job_spec(process)
        except Exception as exc:  # the broker is away: the next round tries again
            log.warning("job spec of %s not sent again yet: %s", process.pk, exc)
            break
        Process.objects.filter(pk=process.pk).update(spec_sent_at=timezone.now())
        sent += 1
    return sent


def outbox_sweep() -> int:
    """Publish again the processes still PENDING a while after they were committed (the broker
    was down, or the web process died between commit and publish). A second copy of a job spec
    is harmless: submission finds the job it already started."""
    cutoff = timezone.now() - timedelta(seconds=settings.REPUBLISH_AFTER_S)
    stale = (Process.objects.filter(state=State.PENDING, created_at__lt=cutoff)
             .select_related("pipeline", "pipeline_version", "pipeline_version__pool")
             .order_by("created_at")[:REPUBLISH_BATCH])
    return sum(process_publish(process) for process in stale)
