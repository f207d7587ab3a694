"""Admission: the control plane's one decision of when a waiting process may go to its target.

A new process is PENDING and waits. ``admit(pool)`` decides which waiting processes of a pool
go now and marks them admitted (``admitted_at``); the relay that called it then publishes
them (PENDING -> QUEUED, ``apps.processes.relay``). The relay runs a round for every pool
with waiting processes when it is woken (a create, an end applied by
``apps.processes.events``, a stop, a pool resumed: ``relay.wake()``) and on its timer.
Workers never decide it; no request waits for it.

- A slot is held by every admitted process not yet ended: admitted PENDING (not yet
  published), QUEUED (its spec is on its way to the target), SUBMITTED, RUNNING, STOPPING. A
  pool holds at most its ``capacity``. A pool that counts GPUs (``gpus`` in its file) also
  admits a process only when its GPUs are free, and gives it those devices
  (``apps.processes.gpu_slots``).
- Race-safe: a pool is admitted under a lock of its Pool row (``select_for_update``; on SQLite
  the database's write lock serialises it). Counting, choosing and marking happen in that
  transaction, publishing after it commits. A publish that fails leaves the process admitted
  PENDING and the relay's next round publishes it again: a control plane killed between the
  two leaks no slot and strands nothing.
- Who goes first: among the teams waiting on the pool, the one whose slots held there divided
  by its weight is lowest (ties: the one whose next process has waited longest), never a team
  at its ``running`` quota; within a team by ``priority`` (higher first), then age. A retry
  (``apps.processes.attempts``) waits like a new process, and not before its ``not_before``.
- A create past its team's ``waiting`` quota is refused (429), counted under the same lock so
  two racing POSTs cannot both pass.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import (
    Count,
    Q,
    QuerySet,
)
from django.utils import timezone
from rest_framework.exceptions import APIException

from apps.pipelines.models import Pool
from apps.processes.gpu_slots import placed_on_gpus
from apps.processes.models import ACTIVE_VALUES, Process
from apps.teams.models import Team
from workers.contract import State


def waiting_on(pool_name: str | None = None) -> QuerySet[Process]:
    """Processes waiting for admission (PENDING, not admitted), of one pool or of all."""
    waiting = Process.objects.filter(state=State.PENDING, admitted_at__isnull=True)
    return waiting if pool_name is None else waiting.filter(pool=pool_name)


def due(waiting: QuerySet[Process]) -> QuerySet[Process]:
    """``waiting`` without the retries whose delay has not passed yet (``not_before``)."""
    return waiting.filter(Q(not_before__isnull=True) | Q(not_before__lte=timezone.now()))


def holding(pool_name: str | None = None) -> QuerySet[Process]:
    """The processes holding a slot (admitted and not ended), of one pool or of all."""
    held = Process.objects.filter(state__in=ACTIVE_VALUES, admitted_at__isnull=False)
    return held if pool_name is None else held.filter(pool=pool_name)


# --- who goes first ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Waiting:
    """A waiting process, as much of it as the order needs."""

    id: object
    team_id: int | None
    priority: int
    created_at: datetime


@dataclass
class Share:
    """One team's standing on one pool: slots held, its weight, its running quota."""

    slug: str | None
    held: int
    weight: float
    running_quota: int | None

    @property
    def at_quota(self) -> bool:
        return self.running_quota is not None and self.held >= self.running_quota

    @property
    def used(self) -> float:
        return self.held / self.weight


def admission_order(queues: dict[int | None, deque[Waiting]],
                    shares: dict[int | None, Share]) -> Iterator[tuple[Waiting, bool]]:
    """Every process of ``queues`` (each team's waiting processes, in the team's order) in the
    order admission takes them, each with whether its team is at its running quota by then
    (those come last: nothing of them goes until a slot of theirs frees).

    Each step gives the next slot to the team using the least of the pool for its weight, as
    if every process before it had gone; ``queues`` and ``shares`` are consumed."""
    while True:
        teams = [team for team, queue in queues.items() if queue]
        if not teams:
            return
        open_teams = [team for team in teams if not shares[team].at_quota]
        team = min(open_teams or teams, key=lambda t: (
            shares[t].used, queues[t][0].created_at, str(queues[t][0].id)))
        shares[team].held += 1
        yield queues[team].popleft(), not open_teams


def pool_shares(pool: Pool, team_ids: Iterable[int | None]) -> dict[int | None, Share]:
    """Each team's share of ``pool`` now: slots held, weight and running quota."""
    counted = holding(pool.name).order_by().values("team_id").annotate(n=Count("id"))
    held: dict[int | None, int] = dict(counted.values_list("team_id", "n"))
    wanted = set(team_ids) | set(held)
    slugs: dict[int | None, str | None] = {None: None}
    slugs.update(Team.objects.filter(pk__in=[t for t in wanted if t is not None])
                 .values_list("pk", "slug"))
    shares = {}
    for team in wanted:
        slug = slugs.get(team)
        shares[team] = Share(slug=slug, held=held.get(team, 0), weight=pool.weight(slug),
                             running_quota=pool.quota(slug, "running"))
    return shares


def of_team(waiting: QuerySet[Process], team: int | None) -> QuerySet[Process]:
    """``waiting`` narrowed to one team's (None: the processes of no team)."""
    return waiting.filter(team__isnull=True) if team is None else waiting.filter(team_id=team)


def team_queues(rows: Iterable[tuple]) -> dict[int | None, deque[Waiting]]:
    queues: dict[int | None, deque[Waiting]] = defaultdict(deque)
    for row in rows:
        item = Waiting(*row)
        queues[item.team_id].append(item)
    return queues


TEAM_ORDER = ("-priority", "created_at", "id")
WAITING_FIELDS = ("id", "team_id", "priority", "created_at")


def _heads(pool_name: str, count: int) -> dict[int | None, deque[Waiting]]:
    """The first ``count`` waiting processes of each team on a pool: all that ``count`` free
    slots can take, however long the queue (one indexed query per waiting team). A retry
    waiting for its delay is not among them."""
    waiting = due(waiting_on(pool_name))
    teams = set(waiting.order_by().values_list("team_id", flat=True).distinct())
    rows: list[tuple] = []
    for team in teams:
        rows += of_team(waiting, team).order_by(*TEAM_ORDER).values_list(
            *WAITING_FIELDS)[:count]
    return team_queues(rows)


# --- admitting and publishing -----------------------------------------------------------------

def admit(pool_name: str) -> list:
    """Admit what may go now on ``pool_name``; returns the admitted processes' ids. The relay
    publishes them (``apps.processes.relay``), in the round that called this."""
    with transaction.atomic():
        pool = Pool.objects.select_for_update().filter(name=pool_name).first()
        if pool is None or pool.paused:
            return []
        free = pool.capacity - holding(pool_name).count()
        if free <= 0:
            return []
        queues = _heads(pool_name, free)
        if not queues:
            return []
        chosen: list = []
        for item, blocked in admission_order(queues, pool_shares(pool, queues)):
            if blocked or len(chosen) == free:
                break
            chosen.append(item.id)
        if chosen and pool.gpu_devices:  # a pool that counts GPUs: those whose GPUs fit
            chosen = placed_on_gpus(pool.gpu_devices, holding(pool_name), chosen)
        if chosen:
            Process.objects.filter(pk__in=chosen, state=State.PENDING,
                                   admitted_at__isnull=True).update(admitted_at=timezone.now())
    return chosen


def admit_all() -> int:
    """Admit on every pool with waiting processes (each relay round); returns how many."""
    pools = set(waiting_on().order_by().values_list("pool", flat=True).distinct())
    return sum(len(admit(name)) for name in sorted(pools))


# --- the waiting quota --------------------------------------------------------------------------

class QuotaExceeded(APIException):
    """A create past its team's waiting quota on the pool: 429 with Retry-After."""

    status_code = 429
    default_code = "quota_exceeded"

    def __init__(self, detail: str, wait: int):
        super().__init__(detail)
        self.wait = wait  # DRF's handler answers it as Retry-After


def waiting_quota_check(pool: Pool, team: Team | None) -> None:
    """Raise QuotaExceeded when ``team`` already has its waiting quota of processes waiting
    on ``pool``. Call it in the create's transaction: it locks the pool's row (as admission
    does), so two creates racing for the last place cannot both pass."""
    slug = team.slug if team is not None else None
    if pool.quota(slug, "waiting") is None:
        return
    locked = Pool.objects.select_for_update().get(pk=pool.pk)  # its quotas as they are now
    quota = locked.quota(slug, "waiting")
    if quota is None:
        return
    waiting = waiting_on(pool.name).filter(team=team).count()
    if waiting >= quota:
        raise QuotaExceeded(
            f"team {slug} has {waiting} of its {quota} waiting processes on pool {pool.name}; "
            "submit again once some have been admitted.",
            wait=settings.QUOTA_RETRY_AFTER_S)
