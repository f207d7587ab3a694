"""A sweep against its team's waiting quota: all of its runs must fit, or none is created."""

from __future__ import annotations

from django.conf import settings

from apps.pipelines.models import Pool
from apps.processes.admission import QuotaExceeded, waiting_on


def waiting_room_check(pool: Pool, team, size: int) -> None:
    """Raise QuotaExceeded (429, Retry-After) when ``size`` more waiting processes would take
    ``team`` past its waiting quota on ``pool``. Call it in the sweep's transaction: it locks
    the pool's row as a single create's check does, so racing requests cannot both pass."""
    slug = team.slug if team is not None else None
    if pool.quota(slug, "waiting") is None:
        return
    locked = Pool.objects.select_for_update().get(pk=pool.pk)  # its quotas as they are now
    quota = locked.quota(slug, "waiting")
    if quota is None:
        return
    waiting = waiting_on(pool.name).filter(team=team).count()
    if waiting + size > quota:
        raise QuotaExceeded(
            f"team {slug} has {waiting} of its {quota} waiting processes on pool {pool.name}; "
            f"a sweep of {size} does not fit. Submit it again once some have been admitted, "
            f"or in sweeps of at most {max(quota - waiting, 0)}.",
            wait=settings.QUOTA_RETRY_AFTER_S)
