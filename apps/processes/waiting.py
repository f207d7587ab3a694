"""Why a waiting process waits: its place in the order admission takes a pool's processes
(``apps.processes.admission``), worked out from a few grouped reads rather than by running
admission, for ``waiting_for`` on a page of processes and for a pool's whole queue."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from django.db.models import Case, Count, F, IntegerField, Q, QuerySet, Value, When, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from apps.pipelines.models import Pool
from apps.processes.admission import (
    TEAM_ORDER,
    WAITING_FIELDS,
    Share,
    Waiting,
    admission_order,
    holding,
    of_team,
    pool_shares,
    team_queues,
    waiting_on,
)
from apps.processes.gpu_slots import devices_held, gpus_asked, place
from apps.processes.models import Process
from workers.contract import State


class Standing:
    """One pool's admission as it stands, read with a few grouped queries: the slots each
    team holds and the processes each team has waiting, with its weight and quota. It says
    where a waiting process stands in the order ``admission_order`` gives, and why it
    waits."""

    def __init__(self, pool: Pool, waiting: dict[int | None, int] | None = None):
        self.pool = pool
        if waiting is None:
            counted = waiting_on(pool.name).order_by().values("team_id").annotate(n=Count("id"))
            waiting = dict(counted.values_list("team_id", "n"))
        self.waiting = waiting
        self.shares = pool_shares(pool, waiting)
        self.held = sum(share.held for share in self.shares.values())

    def _open(self, team: int | None) -> int:
        """How many of the team's waiting processes come before every team's over-quota ones:
        those its running quota still lets in."""
        share, waiting = self.shares[team], self.waiting.get(team, 0)
        if share.running_quota is None:
            return waiting
        return min(waiting, max(0, share.running_quota - share.held))

    def place(self, item: Waiting, ahead_in_team: int,
              nth: Callable[[int | None, int], Waiting]) -> tuple[int, int]:
        """(how many processes go before ``item``, how many of those are other teams'), as
        ``admission_order`` would take them, with no simulation: ``item`` is its team's pick
        number ``ahead_in_team + 1`` and goes when that pick's share of the pool is the
        smallest. ``nth(team, j)`` is a team's j-th waiting process (1 first), asked only
        when another team's pick ties with ``item``'s."""
        mine = self.shares[item.team_id]
        used = (mine.held + ahead_in_team) / mine.weight
        blocked = ahead_in_team >= self._open(item.team_id)
        others = 0
        for team in self.shares:
            waiting = self.waiting.get(team, 0)
            if team == item.team_id or not waiting:
                continue
            opened = self._open(team)
            if blocked:  # after every open process, among the other over-quota ones
                others += opened + self._before(team, opened + 1, waiting, used, item, nth)
            else:
                others += self._before(team, 1, opened, used, item, nth)
        return ahead_in_team + others, others

    def _before(self, team: int | None, first: int, last: int, used: float, item: Waiting,
                nth: Callable[[int | None, int], Waiting]) -> int:
        """How many of ``team``'s picks ``first``..``last`` go before ``item`` (whose pick
        leaves the pool used ``used``): a pick using less goes first; an equal one if its
        process is older (then by id), as in ``admission_order``."""
        share = self.shares[team]

        def uses(j: int) -> float:  # the share the team's j-th pick starts from
            return (share.held + j - 1) / share.weight

        low, high = first, last + 1  # the first pick not using less than ``used``
        while low < high:
            middle = (low + high) // 2
            if uses(middle) < used:
                low = middle + 1
            else:
                high = middle
        before = low - first
        if low <= last and uses(low) == used:
            tied = nth(team, low)
            before += (tied.created_at, str(tied.id)) < (item.created_at, str(item.id))
        return before

    def reason(self, team: int | None, place: tuple[int, int], gpus: str = "") -> str:
        """Why a waiting process of ``team`` at ``place`` waits, in one line; ``gpus`` says
        so when it waits for GPUs (its own, or those of a process before it)."""
        name, capacity = self.pool.name, self.pool.capacity
        if self.pool.paused:
            return f"pool {name} paused"
        share = self.shares[team]
        if share.at_quota:
            return f"team quota {share.held}/{share.running_quota} running on {name}"
        ahead, others = place
        if not gpus and self.held < capacity and ahead < capacity - self.held:
            return f"admission at the next round of pool {name}"
        if ahead == 0:
            where = "next to go"
        else:
            where = f"behind {ahead} process{'es' if ahead != 1 else ''}"
            if others == ahead:
                where += f" of teams using less of pool {name}"
            elif others:
                where += f", {others} of them of teams using less of pool {name}"
        if self.held >= capacity:
            return f"pool {name} at capacity {self.held}/{capacity}; {where}"
        return f"{gpus}; {where}" if gpus else where


class PoolQueue(Standing):
    """A pool's whole queue: every waiting process in the order admission takes them (one
    read of them all, for GET /api/pools/<name>/queue/), with why each one waits."""

    def __init__(self, pool: Pool):
        rows = (waiting_on(pool.name).order_by("team_id", *TEAM_ORDER)
                .values_list(*WAITING_FIELDS))
        queues = team_queues(rows)
        super().__init__(pool, {team: len(queue) for team, queue in queues.items()})
        simulated = {team: Share(**vars(share)) for team, share in self.shares.items()}
        self.entries = [item for item, _ in admission_order(queues, simulated)]
        seen: dict[int | None, int] = defaultdict(int)
        self.places: dict = {}
        for index, item in enumerate(self.entries):
            self.places[item.id] = (index, index - seen[item.team_id])
            seen[item.team_id] += 1
        # Retries whose delay has not passed: admission passes them by until then.
        self.delayed: dict[object, datetime] = {
            pk: when for pk, when in waiting_on(pool.name).filter(
                not_before__gt=timezone.now()).values_list("id", "not_before") if when}
        self.short_of_gpus, self.gpus = self._gpu_waits()

    def _gpu_waits(self) -> tuple[set, str]:
        """On a pool that counts GPUs: the processes that wait for GPUs (from the first one
        the free slots would take whose GPUs do not fit, as admission stops there), and how
        many of the pool's GPUs are in use."""
        devices = self.pool.gpu_devices
        if not devices:
            return set(), ""
        held = devices_held(holding(self.pool.name))
        in_use = f"pool {self.pool.name} GPUs {len(held & set(devices))}/{len(devices)} in use"
        goes = self.entries[:max(0, self.pool.capacity - self.held)]
        asked = gpus_asked(item.id for item in goes)
        _, stuck = place(devices, held, [(item.id, asked.get(item.id, 0)) for item in goes])
        if stuck is None:
            return set(), in_use
        return {item.id for item in self.entries[stuck:]}, in_use

    def why(self, item: Waiting) -> str:
        if item.id in self.delayed:
            return retry_delay(self.delayed[item.id])
        gpus = self.gpus if item.id in self.short_of_gpus else ""
        return self.reason(item.team_id, self.places[item.id], gpus)


class WaitingFor:
    """The one rule for a process's ``waiting_for``: why it waits for admission, None once it
    is admitted (or ended). Worked out for a page of processes at once (``prepare``): per
    pool, its standing (a few grouped reads), each waiting process's rank in its team and the
    processes of other teams whose turns tie with theirs (one read each for the whole page,
    or one per process for up to ONE_BY_ONE of them), however many wait."""

    def __init__(self):
        self.reasons: dict = {}

    @classmethod
    def known(cls, reasons: dict) -> WaitingFor:
        """One whose reasons for these processes are already known."""
        rule = cls()
        rule.reasons.update(reasons)
        return rule

    def __call__(self, process: Process) -> str | None:
        if not _waits(process):
            return None
        if process.not_before is not None and process.not_before > timezone.now():
            return retry_delay(process.not_before)
        if process.pk not in self.reasons:
            self.prepare([process])
        return self.reasons[process.pk]

    def prepare(self, processes: Iterable[Process]) -> None:
        """Work out the reasons of the waiting ones among ``processes``."""
        by_pool: dict[str, list[Process]] = defaultdict(list)
        for process in processes:
            if _waits(process) and process.pk not in self.reasons:
                by_pool[process.pool].append(process)
        for pool_name, group in by_pool.items():
            pool = Pool.objects.filter(name=pool_name).first()
            if pool is None:
                self.reasons.update((p.pk, f"pool {pool_name} is not defined any more")
                                    for p in group)
                continue
            if pool.gpu_devices:  # who waits for GPUs needs the order itself: read it whole
                self._reasons_in_queue(PoolQueue(pool), group)
                continue
            self._reasons_of(Standing(pool), group)

    def _reasons_in_queue(self, queue: PoolQueue, group: list[Process]) -> None:
        for process in group:
            if process.pk in queue.places:
                self.reasons[process.pk] = queue.why(Waiting(
                    process.pk, process.team_id, process.priority, process.created_at))
            else:  # admitted meanwhile, or newer than the read
                self.reasons[process.pk] = f"admission at the next round of pool {queue.pool.name}"

    def _reasons_of(self, standing: Standing, group: list[Process]) -> None:
        name = standing.pool.name
        items = {p.pk: Waiting(p.pk, p.team_id, p.priority, p.created_at) for p in group
                 if p.team_id in standing.shares}
        ranks = _team_ranks(name, list(items.values()))
        asked: set[tuple[int | None, int]] = set()

        def noted(team: int | None, j: int) -> Waiting:  # the first pass: which ties to read
            asked.add((team, j))
            return _NEVER_BEFORE

        for pk, item in items.items():
            if pk in ranks:
                standing.place(item, ranks[pk] - 1, noted)
        tied = _ties(name, asked)

        def nth(team: int | None, j: int) -> Waiting:  # gone meanwhile: it goes first no more
            return tied.get((team, j), _NEVER_BEFORE)

        for process in group:
            found = items.get(process.pk)
            if found is None or found.id not in ranks:  # admitted, ended, or newer than
                self.reasons[process.pk] = f"admission at the next round of pool {name}"
                continue
            place = standing.place(found, ranks[found.id] - 1, nth)
            self.reasons[process.pk] = standing.reason(found.team_id, place)


def retry_delay(not_before: datetime) -> str:
    """Why a retry waits: its pipeline's delay has not passed (apps.processes.attempts)."""
    return f"retry delay until {not_before:%Y-%m-%d %H:%M:%S} UTC"


# A stand-in for a process that would go after any other.
_NEVER_BEFORE = Waiting(None, None, 0, datetime.max.replace(tzinfo=UTC))


def _waits(process: Process) -> bool:
    return process.state == State.PENDING and process.admitted_at is None


def _ranked(pool_name: str) -> QuerySet[Process]:
    """The waiting processes of a pool, each with ``rank``: its place in its team's order."""
    return waiting_on(pool_name).order_by().annotate(rank=Window(
        RowNumber(), partition_by=[F("team_id")],
        order_by=[F("priority").desc(), F("created_at").asc(), F("id").asc()]))


# Up to this many processes (or ties) are looked up one by one, each in its own team's part
# of the index; more at once, with one pass over the pool's whole queue.
ONE_BY_ONE = 3


def _team_ranks(pool_name: str, items: list[Waiting]) -> dict:
    """Process id -> its rank in its team's order (1 first), for those of ``items`` still
    waiting."""
    if not items:
        return {}
    waiting = waiting_on(pool_name)
    if len(items) <= ONE_BY_ONE:
        still = set(waiting.filter(pk__in=[i.id for i in items]).values_list("pk", flat=True))
        return {item.id: 1 + of_team(waiting, item.team_id).filter(_ahead_of(item)).count()
                for item in items if item.id in still}
    # The condition is put on the rank (a filter on the window goes outside it): a plain
    # filter would leave out the rows the ranks are counted over.
    marked = _ranked(pool_name).annotate(chosen=Case(
        When(pk__in=[i.id for i in items], then=F("rank")), default=Value(0),
        output_field=IntegerField()))
    return dict(marked.filter(chosen__gt=0).values_list("pk", "rank"))


def _ahead_of(item: Waiting) -> Q:
    """Its team's waiting processes that go before ``item``: a higher priority, or the same
    and older (then by id)."""
    same = Q(priority=item.priority)
    return (Q(priority__gt=item.priority) | same & Q(created_at__lt=item.created_at)
            | same & Q(created_at=item.created_at, id__lt=item.id))


def _ties(pool_name: str, picks: set[tuple[int | None, int]]) -> dict:
    """(team, j) -> that team's j-th waiting process, for each of ``picks`` that exists."""
    if len(picks) <= ONE_BY_ONE:
        waiting = waiting_on(pool_name)
        found = {}
        for team, j in picks:
            rows = list(of_team(waiting, team).order_by(*TEAM_ORDER).values_list(
                *WAITING_FIELDS)[j - 1:j])
            if rows:
                found[(team, j)] = Waiting(*rows[0])
        return found
    # Only the teams asked about are ranked: leaving the others out changes no team's ranks.
    teams = {team for team, _ in picks}
    of_teams = Q(team_id__in=[t for t in teams if t is not None])
    if None in teams:
        of_teams |= Q(team__isnull=True)
    on_rank = {"rank__in": {j for _, j in picks}}  # a lookup the stubs cannot see annotated
    ranks = _ranked(pool_name).filter(of_teams, **on_rank).values_list("rank", *WAITING_FIELDS)
    ranked = {(row[2], row[0]): Waiting(*row[1:]) for row in ranks}
    return {pick: ranked[pick] for pick in picks if pick in ranked}
