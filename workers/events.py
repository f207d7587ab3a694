"""Sending what a worker saw to the control plane's ``control`` queue."""

from __future__ import annotations

from .contract import CONTROL_QUEUE, TASK_APPLY_EVENTS, Event


def send_events(app, events: list[Event]) -> None:
    """One message for the batch. The publish is confirmed by the broker (publisher confirms
    on RabbitMQ) before the task that saw them is acknowledged."""
    if events:
        app.send_task(TASK_APPLY_EVENTS, args=[[e.to_dict() for e in events]],
                      queue=CONTROL_QUEUE)
