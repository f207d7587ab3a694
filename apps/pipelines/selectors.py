"""Reading pipelines."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from functools import cached_property

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from apps.pipelines.models import Pipeline, PipelineVersion, Pool, ServiceHeartbeat, Worker
from workers.contract import ACTIVE_STATES, POLLED_STATES, State


def pipeline_list() -> QuerySet[Pipeline]:
    return Pipeline.objects.filter(active=True, latest_version__isnull=False).select_related(
        "latest_version", "latest_version__pool"
    )


def pipeline_version_get(name: str, number: int | None = None) -> PipelineVersion | None:
    """The version a new run of ``name`` uses: the latest one not withdrawn, or ``number``
    when pinned. None when there is no such version or it is withdrawn: see
    ``pipeline_version_refusal`` for why."""
    versions = PipelineVersion.objects.select_related("pipeline", "pool").filter(
        pipeline__name=name, pipeline__active=True, withdrawn=False
    )
    if number is not None:
        return versions.filter(number=number).first()
    return versions.order_by("-number").first()


def pipeline_version_refusal(name: str, number: int | None = None) -> tuple[str, str]:
    """Why ``pipeline_version_get(name, number)`` found nothing: (the field to name, a message
    for the caller)."""
    versions = PipelineVersion.objects.filter(pipeline__name=name, pipeline__active=True)
    if not versions.exists():
        known = ", ".join(pipeline_list().values_list("name", flat=True)) or "none loaded"
        return "pipeline", f"Unknown pipeline {name!r}. Known pipelines: {known}."
    runnable = list(versions.filter(withdrawn=False).values_list("number", flat=True))
    if number is None:
        return "pipeline", (f"Every version of pipeline {name!r} is withdrawn: it starts no "
                            "new run until an operator restores one.")
    offer = (f"Runnable versions: {', '.join(map(str, runnable))}." if runnable
             else "No version of it is runnable now.")
    if versions.filter(number=number).exists():
        return "version", (f"Version {number} of pipeline {name!r} is withdrawn: it starts no "
                           f"new run. {offer}")
    return "version", f"Pipeline {name!r} has no version {number}. {offer}"


def live_workers():
    cutoff = timezone.now() - timedelta(seconds=settings.WORKER_TIMEOUT_S)
    return Worker.objects.filter(last_seen__gte=cutoff)


def last_service_heartbeat(name: str) -> ServiceHeartbeat | None:
    """The latest heartbeat of a part of the control plane, from whichever host sent it."""
    return ServiceHeartbeat.objects.filter(name=name).order_by("-last_seen").first()


class QueuedTooLong:
    """The one rule for "waiting too long": QUEUED for longer than its pool's
    ``queued_limit_s`` (no live worker, a full pool, a lost job spec). Shown, never failed
    for it. ``limits`` (pool name -> seconds) are read with one query, when first needed,
    unless given; ``now`` is fixed when the rule is made."""

    def __init__(self, limits: dict[str, int] | None = None, now=None):
        self.limits, self.now = limits, now or timezone.now()

    @cached_property
    def cutoffs(self) -> dict[str, datetime]:
        """Per pool, the time before which a process queued has waited too long."""
        limits = self.limits
        if limits is None:
            limits = dict(Pool.objects.values_list("name", "queued_limit_s"))
        return {pool: self.now - timedelta(seconds=limit) for pool, limit in limits.items()}

    def condition(self) -> Q:
        """The processes waiting too long, for a query."""
        condition = Q(pk__in=[])
        for pool, cutoff in self.cutoffs.items():
            condition |= Q(pool=pool, queued_at__lt=cutoff)
        return Q(state=State.QUEUED) & condition

    def __call__(self, process) -> bool:
        """Whether ``process``, at hand, waits too long (no query when it is not QUEUED)."""
        if process.state != State.QUEUED or process.queued_at is None:
            return False
        cutoff = self.cutoffs.get(process.pool)
        return cutoff is not None and process.queued_at < cutoff


def queued_too_long(now=None) -> Q:
    """Processes QUEUED for longer than their pool's ``queued_limit_s``: see QueuedTooLong."""
    return QueuedTooLong(now=now).condition()


def pool_overview(processes=None, *, staff: bool = True) -> list[dict]:
    """What ``snw ls`` showed: per pool, capacity, live workers, busy slots, queued, running.

    The counts are of ``processes`` (every process by default: a client passes only its own).
    Without ``staff`` the answer keeps what one tenant may know: no worker names or hosts and
    no busy slots, which would show other tenants' load."""
    from apps.processes.models import Process  # processes depend on pipelines, not back

    processes = Process.objects.all() if processes is None else processes
    counts = defaultdict(int)
    rows = (processes.filter(state__in=[s.value for s in ACTIVE_STATES])
            .order_by().values("pool", "state").annotate(n=Count("id")))
    for row in rows:
        counts[(row["pool"], row["state"])] = row["n"]
    too_long = dict(processes.filter(queued_too_long()).order_by().values("pool")
                    .annotate(n=Count("id")).values_list("pool", "n"))
    workers = defaultdict(list)
    for worker in live_workers():
        workers[worker.pool].append(worker)
    overview = []
    for pool in Pool.objects.all():
        live = workers.get(pool.name, [])
        row = {"name": pool.name, "target": pool.target, "capacity": pool.capacity,
               "status": "up" if live else "down"}
        if staff:
            row["workers"] = [{"name": w.name, "host": w.host, "version": w.version,
                               "capacity": w.capacity, "busy": w.busy,
                               "last_seen": w.last_seen} for w in live]
            row["busy"] = sum(w.busy for w in live)
        row.update({
            "pending": counts[(pool.name, State.PENDING)],
            "queued": counts[(pool.name, State.QUEUED)],
            "waiting_too_long": too_long.get(pool.name, 0),
            "running": sum(counts[(pool.name, s)] for s in POLLED_STATES),
        })
        overview.append(row)
    return overview
