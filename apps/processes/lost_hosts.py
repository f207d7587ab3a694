"""A host that never comes back. The jobs of host-bound targets (local, Docker) live on one
host and only that host's worker can poll them: once every worker of a pool on that host has
been silent past the pool's ``host_lost_after_s``, nobody will answer for them again.

Silence counts only while the control plane could have heard the host: heartbeats reach it
through the queue the poll loop's rounds come by, so after a gap between two rounds (its
consumer, its beat or the broker away) a host's silence counts from the end of the gap, never
from its last heartbeat before it (``Listening``).

Each round of the poll loop ends such processes LOST with "host X silent since T" (reason
``lost``), through the path the workers' events take (``events_apply``): whatever applies to a
job that was lost (a retry the pipeline asks for, the slot freed for the next run) applies
here too. A process already STOPPING ends STOPPED: its user asked for that end. A host that
returns later reconciles as any poll does, and its events never move an ended process back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from apps.pipelines.models import Pool, Worker
from apps.processes.events import events_apply
from apps.processes.models import Process
from apps.processes.transitions import CONTROL_PLANE
from workers.contract import HOST_BOUND_TARGETS, POLLED_STATES, Event, State
from workers.signing import Sender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControlSender(Sender):
    """The control plane speaking for a host that no longer can: it passes the check that an
    event comes from the job's host, and the history records it as the control plane's."""

    @property
    def source(self) -> str:
        return CONTROL_PLANE


@dataclass
class Listening:
    """Since when this control-plane process has heard its workers without a gap: a gap
    between two rounds longer than WORKER_TIMEOUT_S is a time it could not hear a host."""

    since: datetime | None = None
    last_round: datetime | None = None

    def round(self, now: datetime) -> datetime:
        """Note a round at ``now``; returns since when it has listened."""
        gap = timedelta(seconds=settings.WORKER_TIMEOUT_S)
        if self.since is None or self.last_round is None or now - self.last_round > gap:
            self.since = now
        self.last_round = now
        return self.since


LISTENING = Listening()  # this process's, as its rounds of the poll loop come


def silent_hosts_round() -> int:
    """One round of the poll loop: end the processes of the hosts silent past their bound."""
    now = timezone.now()
    return silent_hosts_end(LISTENING.round(now), now)


def silent_hosts_end(listening_since: datetime, now: datetime | None = None) -> int:
    """End the processes of every host silent past its pool's bound, counting silence from
    ``listening_since`` at the earliest; returns how many."""
    now = now or timezone.now()
    bounds = dict(Pool.objects.filter(target__in=HOST_BOUND_TARGETS)
                  .values_list("name", "host_lost_after_s"))
    held = (Process.objects.filter(state__in=POLLED_STATES, pool__in=list(bounds),
                                   target__in=HOST_BOUND_TARGETS)
            .exclude(host="").order_by().values("pool", "host")
            .annotate(last_job=Max("submitted_at")))
    hosts = {(row["pool"], row["host"]): row["last_job"] for row in held}
    if not hosts:
        return 0
    seen = {(row["pool"], row["host"]): row["last"] for row in
            Worker.objects.filter(pool__in={pool for pool, _ in hosts}).order_by()
            .values("pool", "host").annotate(last=Max("last_seen"))}
    ended = 0
    for (pool, host), last_job in sorted(hosts.items()):
        # Its workers' last heartbeat; with none ever recorded, the last job it reported.
        since = seen.get((pool, host)) or last_job
        if since is None or now - max(since, listening_since) <= timedelta(seconds=bounds[pool]):
            continue
        ended += _host_end(pool, host, since)
    return ended


def _host_end(pool: str, host: str, since: datetime) -> int:
    message = f"host {host} silent since {since:%Y-%m-%d %H:%M:%S} UTC"
    log.warning("pool %s: %s; its processes end", pool, message)
    held = Process.objects.filter(pool=pool, host=host, state__in=POLLED_STATES)
    events = [Event(process_id=str(pid), source=CONTROL_PLANE, host=host, message=message,
                    **_end(State(state)))
              for pid, state in held.values_list("id", "state")]
    return events_apply(events, ControlSender(pool=pool, worker=f"{CONTROL_PLANE}@{host}"))


def _end(state: State) -> dict:
    """LOST (reason ``lost``: a retry may follow); STOPPED for a process asked to stop."""
    if state == State.STOPPING:
        return {"state": State.STOPPED.value}
    return {"state": State.LOST.value, "reason": "lost"}
