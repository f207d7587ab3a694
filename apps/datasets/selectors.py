"""Reading datasets, always through what the caller may see: the datasets of its teams.
Views, the admin and (later) the processes that name a dataset find it here and nowhere
else: one outside the caller's teams, or deleted, is "not found" everywhere."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.datasets.models import Dataset
from apps.processes.models import Process
from apps.teams.access import ACTION_ROLES, Caller, in_teams, one_in_reach
from apps.teams.models import Team
from apps.teams.roles import Role
from apps.teams.selectors import submit_team, team_get
from workers.contract import TERMINAL_STATES

TERMINAL_VALUES = sorted(state.value for state in TERMINAL_STATES)


def dataset_list(caller: Caller, needed: str = Role.VIEWER, *,
                 deleted: bool = False) -> QuerySet[Dataset]:
    """The datasets of the teams where ``caller`` holds ``needed`` or more (a superuser: all
    of them); the deleted ones too with ``deleted`` (the admin's history)."""
    datasets = Dataset.objects.select_related("owner", "team")
    if not deleted:
        datasets = datasets.filter(deleted_at__isnull=True)
    return in_teams(datasets, caller, needed)


def dataset_for(caller: Caller, pk, action: str = "read") -> Dataset:
    """The dataset ``pk`` for ``action`` (a key of ACTION_ROLES: ``read``, ``upload``,
    ``delete``). Http404 when the caller cannot see it, it was deleted, or ``pk`` is no id:
    the answer never says whether it exists; a RoleTooLow (403) naming the role needed when
    the caller sees it but may not do that."""
    return one_in_reach(dataset_list(caller), caller, pk, action, "dataset")


def dataset_users(dataset: Dataset) -> QuerySet[Process]:
    """The processes using ``dataset`` that have not finished: while there is one, the
    dataset stays."""
    return dataset.processes.exclude(state__in=TERMINAL_VALUES).order_by("created_at")


def upload_precheck(caller: Caller) -> None:
    """Refuse, before a byte of the body is read, a caller who may upload to none of its
    teams: a RoleTooLow (403) naming the role an upload needs, or (in no team at all)
    submit_team's ValidationError naming ``team``."""
    if caller.superuser or caller.team_ids(ACTION_ROLES["upload"]):
        return
    if not caller.roles:
        submit_team(None, caller)  # raises: in no team
    caller.require(min(caller.roles), "upload")


def upload_team(slug: str | None, caller: Caller) -> Team | None:
    """The team a new dataset of the caller belongs to, picked as a process's
    (``submit_team``: the named team, else the caller's one team it may upload to; a
    ValidationError naming ``team`` otherwise), except that a team the caller is in with a
    role below the upload's is a RoleTooLow (403) naming that role."""
    if slug:
        seen = team_get(slug, caller)
        if seen is not None:
            caller.require(seen.pk, "upload")
    else:
        upload_precheck(caller)
    return submit_team(slug, caller)
