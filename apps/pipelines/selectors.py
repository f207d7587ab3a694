"""Reading pipelines and pools, as far as the caller may: a pool open to a listed set of
teams (its file's ``teams``), and its pipelines, exist only for those teams, for those who run
the service and for superusers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cached_property

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from apps.pipelines.models import Pipeline, PipelineVersion, Pool, ServiceHeartbeat, Worker
from apps.teams.access import Caller, sees_operations
from apps.teams.models import Team
from workers.contract import ACTIVE_STATES, POLLED_STATES, State


def sees_every_pool(caller: Caller) -> bool:
    """Superusers and those who run the service see every pool, open to their teams or not."""
    return caller.superuser or sees_operations(caller)


def pools_visible(caller: Caller) -> QuerySet[Pool]:
    """The pools ``caller`` may see: every pool for those who run the service; for anyone
    else the pools open to every team or to one of the caller's teams (any role)."""
    if sees_every_pool(caller):
        return Pool.objects.all()
    teams = caller.team_ids()
    slugs = set(Team.objects.filter(pk__in=teams or []).values_list("slug", flat=True))
    names = [pool.name for pool in Pool.objects.only("name", "teams")
             if pool.teams is None or slugs & set(pool.teams)]
    return Pool.objects.filter(name__in=names)


def pools_open_to(team: Team | None) -> set[str] | None:
    """The names of the pools a process of ``team`` may run on; None when it may run on
    every pool (no team: a superuser's run; or no pool lists its teams)."""
    if team is None:
        return None
    pools = list(Pool.objects.only("name", "teams"))
    if all(pool.teams is None for pool in pools):
        return None
    return {pool.name for pool in pools if pool.open_to(team.slug)}


def pipeline_list(pools: QuerySet[Pool] | set[str] | None = None) -> QuerySet[Pipeline]:
    """The active pipelines; only those whose latest version runs on one of ``pools`` (a
    queryset or names; None: every pool)."""
    pipelines = Pipeline.objects.filter(active=True, latest_version__isnull=False).select_related(
        "latest_version", "latest_version__pool"
    )
    if pools is None:
        return pipelines
    if isinstance(pools, QuerySet):
        return pipelines.filter(latest_version__pool__in=pools)
    return pipelines.filter(latest_version__pool__name__in=pools)


def pipeline_version_get(name: str, number: int | None = None, *,
                         pools: set[str] | None = None) -> PipelineVersion | None:
    """The version a new run of ``name`` uses: the latest one not withdrawn, or ``number``
    when pinned; with ``pools`` (names), only a version that runs on one of them. None when
    there is no such version or it is withdrawn: see ``pipeline_version_refusal`` for why."""
    versions = _versions(name, pools).select_related("pipeline", "pool").filter(withdrawn=False)
    if number is not None:
        return versions.filter(number=number).first()
    return versions.order_by("-number").first()


def _versions(name: str, pools: set[str] | None) -> QuerySet[PipelineVersion]:
    versions = PipelineVersion.objects.filter(pipeline__name=name, pipeline__active=True)
    return versions if pools is None else versions.filter(pool__name__in=pools)


def pipeline_version_refusal(name: str, number: int | None = None, *,
                             pools: set[str] | None = None) -> tuple[str, str]:
    """Why ``pipeline_version_get(name, number, pools=pools)`` found nothing: (the field to
    name, a message for the caller). A pipeline of none of ``pools`` is answered exactly as
    one that does not exist, among the pipelines of ``pools`` only: nothing tells it exists."""
    versions = _versions(name, pools)
    if not versions.exists():
        known = ", ".join(pipeline_list(pools).values_list("name", flat=True)) or "none loaded"
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


def cluster_of(workers) -> dict | None:
    """A pool's cluster as its freshest worker that reported one saw it (Slurm pools), or None."""
    reported = [w for w in workers if w.cluster]
    return max(reported, key=lambda w: w.last_seen).cluster if reported else None


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


def pool_overview(processes=None, *, staff: bool = True, pools=None) -> list[dict]:
    """What ``snw ls`` showed: per pool, capacity, paused, live workers (how many, for anyone;
    which, for staff), busy slots, and its
    processes: pending, queued, ``waiting`` (for admission), ``running`` (holding a slot:
    admitted and not ended).

    The counts are of ``processes`` (every process by default: a client passes only its own),
    of the pools of ``pools`` (default: all), all read by one statement so they agree with
    each other at the moment it ran. Without ``staff`` the answer keeps what one tenant may
    know: no worker names or hosts and no busy slots, which would show other tenants' load."""
    from apps.processes.models import Process  # processes depend on pipelines, not back

    processes = Process.objects.all() if processes is None else processes
    counts = {row["pool"]: row for row in (
        processes.filter(state__in=[s.value for s in ACTIVE_STATES]).order_by().values("pool")
        .annotate(pending=Count("id", filter=Q(state=State.PENDING)),
                  queued=Count("id", filter=Q(state=State.QUEUED)),
                  on_target=Count("id", filter=Q(state__in=[s.value for s in POLLED_STATES])),
                  waiting=Count("id", filter=Q(state=State.PENDING, admitted_at__isnull=True)),
                  running=Count("id", filter=Q(admitted_at__isnull=False))))}
    too_long = dict(processes.filter(queued_too_long()).order_by().values("pool")
                    .annotate(n=Count("id")).values_list("pool", "n"))
    workers = defaultdict(list)
    for worker in live_workers():
        workers[worker.pool].append(worker)
    pools = list(Pool.objects.all() if pools is None else pools)
    gpus_in_use = _gpus_in_use(processes, [p.name for p in pools if p.gpu_devices])
    overview = []
    for pool in pools:
        live = workers.get(pool.name, [])
        cluster = cluster_of(live)
        up = bool(live) and (cluster is None or cluster["reachable"])
        row = {"name": pool.name, "target": pool.target, "capacity": pool.capacity,
               "paused": pool.paused, "status": "up" if up else "down",
               "workers_alive": len(live)}  # a count says nothing of other tenants' load
        if cluster is not None:  # reachability and REST version for all; the words for staff
            row["cluster"] = {key: cluster[key] for key in ("reachable", "rest_api_version")}
            if staff:
                row["cluster"]["detail"] = cluster["detail"]
        if staff:
            row["workers"] = [{"name": w.name, "host": w.host, "version": w.version,
                               "capacity": w.capacity, "busy": w.busy,
                               "last_seen": w.last_seen} for w in live]
            row["busy"] = sum(w.busy for w in live)
        found = counts.get(pool.name, {})
        row.update({
            "pending": found.get("pending", 0),
            "queued": found.get("queued", 0),
            "waiting_too_long": too_long.get(pool.name, 0),
            "waiting": found.get("waiting", 0),
            "running": found.get("running", 0),
            "on_target": found.get("on_target", 0),
        })
        if pool.gpu_devices:  # a pool that counts GPUs: how many, and how many are held
            row.update(gpus=len(pool.gpu_devices), gpus_in_use=gpus_in_use[pool.name])
        overview.append(row)
    return overview


def _gpus_in_use(processes, pool_names: list[str]) -> dict[str, int]:
    """Per pool of ``pool_names``, the GPU devices held by the admitted, not ended processes
    among ``processes``."""
    in_use: dict[str, int] = defaultdict(int)
    if pool_names:
        held = processes.filter(pool__in=pool_names, admitted_at__isnull=False,
                                state__in=[s.value for s in ACTIVE_STATES])
        for pool, devices in held.exclude(gpu_devices=[]).values_list("pool", "gpu_devices"):
            in_use[pool] += len(devices)
    return in_use


class PoolQueueListing(Sequence):
    """``pool``'s waiting processes in the order admission takes them, as rows: id, pipeline,
    team, priority, created_at, waiting_for and ``position`` in the whole queue (1: the next
    to go). With ``teams`` (ids), only those teams' processes, at their places in the whole.

    A sequence a paginator slices: the queue is read once, the rows of a page only when it
    is sliced."""

    def __init__(self, pool: Pool, teams: set[int] | None = None):
        from apps.processes.waiting import PoolQueue  # processes depend on pipelines

        self.queue = PoolQueue(pool)
        self.shown = [(position, item) for position, item in
                      enumerate(self.queue.entries, start=1)
                      if teams is None or item.team_id in teams]

    def __len__(self) -> int:
        return len(self.shown)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._rows(self.shown[index])
        return self._rows([self.shown[index]])[0]

    def _rows(self, shown: list) -> list[dict]:
        from apps.processes.models import Process

        processes = {p.pk: p for p in Process.objects.filter(pk__in=[i.id for _, i in shown])
                     .select_related("pipeline", "team").only("pipeline__name", "team__slug")}
        rows = []
        for position, item in shown:
            process = processes.get(item.id)
            rows.append({
                "id": item.id,
                "pipeline": process.pipeline.name if process else None,
                "team": process.team.slug if process and process.team else None,
                "priority": item.priority, "created_at": item.created_at,
                "waiting_for": self.queue.why(item), "position": position})
        return rows


def pool_queue(pool: Pool, teams: set[int] | None = None) -> PoolQueueListing:
    """``pool``'s waiting processes in admission order (see PoolQueueListing)."""
    return PoolQueueListing(pool, teams)
