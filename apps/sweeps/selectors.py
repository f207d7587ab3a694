"""Reading sweeps, always through what the caller may see: the sweeps of its teams. Views and
the admin find sweeps here and nowhere else."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from apps.processes.models import Process
from apps.processes.selectors import process_list
from apps.sweeps.models import Sweep
from apps.teams.access import Caller, in_teams, one_in_reach
from apps.teams.roles import Role
from workers.contract import State


def sweep_list(caller: Caller, needed: str = Role.VIEWER) -> QuerySet[Sweep]:
    """The sweeps of the teams where ``caller`` holds ``needed`` or more (a superuser: all)."""
    sweeps = Sweep.objects.select_related("pipeline", "pipeline_version", "owner", "team")
    return in_teams(sweeps, caller, needed)


def sweep_for(caller: Caller, pk, action: str = "read") -> Sweep:
    """The sweep ``pk`` for ``action`` (a key of ACTION_ROLES): Http404 when the caller cannot
    see it, RoleTooLow (403) naming the role needed when it sees it but may not do that."""
    return one_in_reach(sweep_list(caller), caller, pk, action, "sweep")


def sweep_counts(sweeps: list[Sweep]) -> dict:
    """{sweep id: {state: how many of its processes are in it}}, every state named, in one
    query for all of ``sweeps``."""
    counts: dict = {sweep.pk: dict.fromkeys((s.value for s in State), 0) for sweep in sweeps}
    rows = (Process.objects.filter(sweep__in=list(counts)).order_by()
            .values_list("sweep_id", "state").annotate(n=Count("id")))
    for sweep_id, state, n in rows:
        counts[sweep_id][state] = n
    return counts


def sweep_processes(caller: Caller, sweep: Sweep) -> QuerySet[Process]:
    """The processes of ``sweep``, in the order it created them."""
    return process_list(caller).filter(sweep=sweep).order_by("created_at", "id")
