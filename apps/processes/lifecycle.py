"""The end of a process's life: deleting a finished one (the API, the admin) and retention,
which purges finished processes older than ``ORCH_RETENTION_DAYS`` on the beat.

A live process is never deleted: its job would go on on the target with nobody to stop it,
poll it or keep its log. Deleting a process removes its events, log and outputs (their rows by
the database's cascade, their bytes from the store once that commits).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import APIException

from apps.audit.models import Action
from apps.audit.services import audit_record
from apps.datasets.outputs import outputs_forget
from apps.processes.models import Process
from apps.teams.access import Caller
from workers.contract import TERMINAL_STATES, is_terminal

log = logging.getLogger(__name__)

TERMINAL_VALUES = sorted(s.value for s in TERMINAL_STATES)


class ProcessNotFinished(APIException):
    """A process that has not finished cannot be deleted: a 409."""

    status_code = 409
    default_code = "not_finished"


def process_delete(process: Process, actor: Caller | None = None) -> None:
    """Delete a finished process with its events and log; ProcessNotFinished (409) otherwise.
    One audit entry, in the same transaction."""
    with transaction.atomic():
        # Under the row's lock: a process cannot be re-run into life, but its state is read
        # where no event can move it meanwhile.
        locked = Process.objects.select_for_update().get(pk=process.pk)
        if not is_terminal(locked.state):
            raise ProcessNotFinished(
                f"process {locked.pk} is {locked.state}: stop it, and delete it once it has "
                "finished")
        audit_record(actor, Action.DELETE, team=locked.team, target=f"process {locked.pk}",
                     detail={"pipeline": locked.pipeline.name, "state": locked.state})
        outputs_forget([locked.pk])
        locked.delete()


# When this control consumer last purged: retention runs at most every RETENTION_EVERY_S.
_last_purge = 0.0
RETENTION_EVERY_S = 600.0


def retention_due() -> int:
    """Purge if this consumer has not in the last RETENTION_EVERY_S (several consumers may
    purge at once: each batch deletes what is still there)."""
    global _last_purge
    if not settings.RETENTION_DAYS or time.monotonic() - _last_purge < RETENTION_EVERY_S:
        return 0
    _last_purge = time.monotonic()
    return retention_purge()


def retention_purge(days: float | None = None, batch: int | None = None,
                    now=None) -> int:
    """Delete finished processes that ended more than ``days`` ago (ORCH_RETENTION_DAYS; 0:
    keep everything), a batch per transaction so the tables are never locked for long.
    Returns how many were deleted, and logs it."""
    days = settings.RETENTION_DAYS if days is None else days
    batch = batch or settings.RETENTION_BATCH
    if not days or days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    purged = 0
    while True:
        with transaction.atomic():
            ids = list(Process.objects.filter(state__in=TERMINAL_VALUES, finished_at__lt=cutoff)
                       .order_by("finished_at").values_list("pk", flat=True)[:batch])
            if not ids:
                break
            outputs_forget(ids)
            Process.objects.filter(pk__in=ids).delete()
            audit_record(None, Action.PURGE, target=f"{len(ids)} processes",
                         detail={"finished_before": cutoff.isoformat(), "days": days})
        purged += len(ids)
        log.info("retention: purged %d processes that finished before %s", len(ids),
                 cutoff.isoformat())
    return purged
