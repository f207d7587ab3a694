"""Sending what a worker saw to the control plane's ``control`` queue, signed with this
worker's key (``workers.credential``): the control plane believes an event only from the
worker that holds its process."""

from __future__ import annotations

from . import credential
from .contract import CONTROL_QUEUE, TASK_APPLY_EVENTS, Event
from .signing import sign_report


def send_events(app, events: list[Event]) -> None:
    """One message for the batch. The publish is confirmed by the broker (publisher confirms
    on RabbitMQ) before the task that saw them is acknowledged. Raises SignatureError when
    this worker has no key yet: the events are not sent, as when the broker is away."""
    if events:
        held = credential.current()
        envelope = sign_report("events", held.pool, held.worker,
                               [e.to_dict() for e in events], key=held.worker_keys[0])
        app.send_task(TASK_APPLY_EVENTS, args=[envelope], queue=CONTROL_QUEUE,
                      argsrepr=f"[{len(events)} events of {held.worker}]")
