"""The one place a process changes state. The rule itself (forward only) is
``workers.contract.can_move``; this module applies it to a row and records the event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import transaction

from apps.processes.clock import transition_time
from apps.processes.models import Process, ProcessEvent
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
         at: datetime | None = None) -> list[str]:
    """Move a locked ``process`` to ``to`` if that moves it forward, record the event, and
    return the fields to save ([] when the move was refused: late or duplicate news).

    ``at`` is when the change happened (a worker's observation); None means now, for the
    control plane's own decisions. The event and the process's stamps record that time,
    bounded by ``clock.transition_time``."""
    if not can_move(process.state, to):
        return []
    when = transition_time(process, at)
    ProcessEvent.objects.create(
        process=process, from_state=process.state, to_state=to, source=source, detail=detail,
        at=when,
    )
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
    return True
