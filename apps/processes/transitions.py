"""The one place a process changes state. The rule itself (forward only) is
``workers.contract.can_move``; this module applies it to a row and records the event. The one
move back, a retry's new attempt, is ``apps.processes.attempts.retry``'s."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.db.models import F, Max, Value
from django.db.models.functions import Coalesce

from apps.processes.attempts import attempt_sync, attempts_queued
from apps.processes.clock import transition_time
from apps.processes.models import Process, ProcessEvent
from apps.webhooks.services import deliveries_record, deliveries_record_many
from workers.contract import State, can_move, is_terminal

# The source the control plane's own transitions record (PENDING -> QUEUED).
CONTROL_PLANE = "control"

# The timestamp each state sets when a process first reaches it.
STAMPS = {
    State.QUEUED: "queued_at",
    State.SUBMITTED: "submitted_at",
    State.RUNNING: "started_at",
}


def move(process: Process, to: State, source: str, detail: str = "",
         at: datetime | None = None, *, retried: bool = False) -> list[str]:
    """Move a locked ``process`` to ``to`` if that moves it forward, record the event, and
    return the fields to save ([] when the move was refused: late or duplicate news).

    ``at`` is when the change happened (a worker's observation); None means now, for the
    control plane's own decisions. The event and the process's stamps record that time,
    bounded by ``clock.transition_time``. ``retried``: an attempt's end that a retry follows
    at once, which no webhook hears as the process's end (the retry's own event is heard)."""
    if not can_move(process.state, to):
        return []
    when = transition_time(process, at)
    ProcessEvent.objects.create(
        process=process, from_state=process.state, to_state=to, source=source, detail=detail,
        at=when, attempt=process.attempt,
    )
    if not retried:
        deliveries_record(process, process.state, to, when)  # webhooks, sent later by the beat
    process.state = to
    fields = ["state", "updated_at"]
    stamp = STAMPS.get(to)
    if stamp and getattr(process, stamp) is None:
        setattr(process, stamp, when)
        fields.append(stamp)
    if is_terminal(to):
        process.finished_at = when
        fields.append("finished_at")
    return fields


def move_to_queued(process: Process, note: str = "", at: datetime | None = None) -> list[str]:
    """PENDING -> QUEUED on a locked ``process``: its job spec was sent to its pool. Recorded by
    the publish, or (with a ``note``) by the event of a worker that answered before the publish
    was recorded. Returns the fields to save, like ``move``."""
    detail = f"sent to pool {process.pool}" + (f" ({note})" if note else "")
    return move(process, State.QUEUED, CONTROL_PLANE, detail, at=at)


def transition(process_id, to: State, source: str, detail: str = "", **values) -> bool:
    """Lock the process, move it forward and set ``values`` with the move. False when the
    process is already at or past ``to``."""
    return _locked_move(process_id, lambda process: move(process, to, source, detail), values)


def transition_to_queued(process_id, **values) -> bool:
    """Lock the process and record its job spec sent (``move_to_queued``), setting ``values``
    with the move. False when the process is already past PENDING."""
    return _locked_move(process_id, move_to_queued, values)


@transaction.atomic
def _locked_move(process_id, moving: Callable[[Process], list[str]], values: dict) -> bool:
    process = Process.objects.select_for_update().get(pk=process_id)
    fields = moving(process)
    if not fields:
        return False
    for name, value in values.items():
        setattr(process, name, value)
    process.save(update_fields=[*fields, *values])
    attempt_sync(process)
    return True


def queued_mark(processes: list[Process], sent_at: datetime) -> list:
    """PENDING -> QUEUED for a batch of locked ``processes`` whose job specs the broker has
    confirmed, in one UPDATE with their events, attempts and webhook deliveries inserted in
    bulk: what ``move_to_queued`` records for one, for all of them. Those no longer PENDING
    (a stop got there first) are left as they are. Returns the ids marked."""
    pending = [p for p in processes if p.state == State.PENDING]
    if not pending:
        return []
    ids = [p.pk for p in pending]
    latest = dict(ProcessEvent.objects.filter(process_id__in=ids).order_by()
                  .values("process_id").annotate(at=Max("at")).values_list("process_id", "at"))
    events, deliveries = [], []
    for process in pending:  # the times transition_time gives, from one read for the batch
        when = max(sent_at, process.created_at, *filter(None, [latest.get(process.pk)]))
        events.append(ProcessEvent(
            process=process, from_state=State.PENDING, to_state=State.QUEUED,
            source=CONTROL_PLANE, detail=f"sent to pool {process.pool}", at=when,
            attempt=process.attempt))
        deliveries.append((process, when))
    Process.objects.filter(pk__in=ids, state=State.PENDING).update(
        state=State.QUEUED, queued_at=Coalesce(F("queued_at"), Value(sent_at)),
        spec_sent_at=sent_at, updated_at=sent_at)
    ProcessEvent.objects.bulk_create(events)
    deliveries_record_many(deliveries, State.PENDING, State.QUEUED)
    attempts_queued(pending)
    return ids
