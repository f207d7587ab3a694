"""The poll loop, run by the beat every POLL_INTERVAL_S: one poll message per pool (or per
host of a host-bound pool) listing every handle the control plane still waits on, and the
job specs of long-QUEUED processes signed and sent again. (What was admitted but never
reached the broker is the relay's: apps.processes.relay publishes it each round.)"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.pipelines.models import Pool
from apps.processes import messaging
from apps.processes.lost_hosts import silent_hosts_round
from apps.processes.models import Process
from workers.contract import (
    CLUSTER_TARGETS,
    HOST_BOUND_TARGETS,
    POLLED_STATES,
    PollRequest,
    State,
    poll_batch_max,
)
from workers.signing import max_age_s

log = logging.getLogger(__name__)

REPUBLISH_BATCH = 500


def pools_poll() -> int:
    """Send this round's poll messages; returns how many were sent."""
    silent_hosts_round()  # first: nothing is sent to a host queue nobody will read again
    processes = (
        Process.objects.filter(state__in=POLLED_STATES)
        .exclude(handle="")
        .select_related("pipeline_version")
        .order_by("id")  # the same batches each round: a worker tells a repeated poll by them
        # Every field poll_item reads: one left out is a query per process (10,000 a cycle).
        .only("id", "handle", "host", "pool", "target", "log_size", "log_cursor", "attempt",
              "log_base", "resources",
              "stop_requested_at", "started_at", "submitted_at", "pipeline_version__resources")
    )
    groups: dict[tuple[str, str, str | None], list] = defaultdict(list)
    for process in processes.iterator(chunk_size=2000):
        host = process.host or None if process.target in HOST_BOUND_TARGETS else None
        groups[(process.pool, process.target, host)].append(messaging.poll_item(process))
    pools = list(Pool.objects.values_list("name", "target", "settings"))
    pool_settings = {name: settings for name, _, settings in pools}
    # A cluster's pool with nothing live still gets its settings every round, in a poll of no
    # handles: its workers' heartbeats report the cluster (reachable? which REST version?)
    # from the start, not only once a run has brought them.
    for name, target, _ in pools:
        if target in CLUSTER_TARGETS:
            groups.setdefault((name, target, None), [])
    sent = 0
    for (pool, target, host), items in groups.items():
        batch = poll_batch_max(target)
        for start in range(0, max(len(items), 1), batch):
            request = PollRequest(pool=pool, target=target, host=host,
                                  items=items[start:start + batch],
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
               .prefetch_related("dataset_uses__dataset")  # the specs' inputs, in one query
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
