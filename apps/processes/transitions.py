"""The one place a process changes state. The rule itself (forward only) is
``workers.contract.can_move``; this module applies it to a row and records the event."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from apps.processes.models import Process, ProcessEvent
from workers.contract import State, can_move, is_terminal

# The timestamp each state sets when a process first reaches it.
STAMPS = {
    State.QUEUED: "queued_at",
    State.SUBMITTED: "submitted_at",
    State.RUNNING: "started_at",
}


def move(process: Process, to: State, source: str, detail: str = "") -> list[str]:
    """Move a locked ``process`` to ``to`` if that moves it forward, record the event, and
    return the fields to save ([] when the move was refused: late or duplicate news)."""
    if not can_move(process.state, to):
        return []
    ProcessEvent.objects.create(
        process=process, from_state=process.state, to_state=to, source=source, detail=detail
    )
    process.state = to
    fields = ["state", "updated_at"]
    now = timezone.now()
    stamp = STAMPS.get(to)
    if stamp and getattr(process, stamp) is None:
        setattr(process, stamp, now)
        fields.append(stamp)
    if is_terminal(to):
        process.finished_at = now
        fields.append("finished_at")
    return fields


@transaction.atomic
def transition(process_id, to: State, source: str, detail: str = "", **values) -> bool:
    """Lock the process, move it forward and set ``values`` with the move. False when the
    process is already at or past ``to``."""
    process = Process.objects.select_for_update().get(pk=process_id)
    fields = move(process, to, source, detail)
    if not fields:
        return False
    for name, value in values.items():
        setattr(process, name, value)
    process.save(update_fields=[*fields, *values])
    return True
