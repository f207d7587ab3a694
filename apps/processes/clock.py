"""When a transition happened. A worker says when it saw a change (``Event.at``, its own
clock); the control plane may apply it much later (its consumer was down, the database was
away). The history keeps the worker's time, bounded so that one bad clock cannot break it:
never in the future, never before the process existed or before its previous transition."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from django.utils import timezone

from apps.processes.models import Process


def observed_at(at: float | None) -> datetime | None:
    """A worker's ``Event.at`` (seconds since the epoch) as a datetime; None when it is no
    usable time at all (missing, not a number, zero or out of range), so the caller falls
    back to the time it applies the event."""
    if isinstance(at, bool) or not isinstance(at, int | float):
        return None
    if not math.isfinite(at) or at <= 0:
        return None
    try:
        return datetime.fromtimestamp(at, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def transition_time(process: Process, at: datetime | None) -> datetime:
    """The time to record for ``process``'s next transition: ``at`` (when it happened; None
    for the control plane's own decisions, which happen now), clamped to now (a worker clock
    ahead) and raised to the latest of the process's creation and previous transition, so
    the history stays in order whatever the clocks say."""
    now = timezone.now()
    when = min(at or now, now)
    return max(when, *_floors(process))


def _floors(process: Process) -> list[datetime]:
    previous = process.events.order_by("-at").values_list("at", flat=True).first()
    return [t for t in (process.created_at, previous) if t is not None]
