"""Each worker tells the control plane, every few seconds, that it is alive: pool, host,
version, capacity and busy slots. A pool with no live worker is shown as down. The heartbeat
is signed with the worker's key: the control plane records it under the identity it proves."""

from __future__ import annotations

import logging
import os

from celery import bootsteps

from . import __version__, credential
from .contract import CONTROL_QUEUE, TASK_HEARTBEAT, Heartbeat, this_host
from .signing import sign_report

log = logging.getLogger(__name__)

INTERVAL_S = float(os.environ.get("ORCH_HEARTBEAT_INTERVAL_S", "10"))


class RepeatingStep(bootsteps.StartStopStep):
    """A boot step that calls ``tick(worker)`` as the worker starts and every ``interval_s()``
    seconds after, until it stops: the workers' heartbeats and the control consumer's."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def interval_s(self) -> float:
        raise NotImplementedError

    def tick(self, worker) -> None:
        raise NotImplementedError

    def start(self, worker):
        self.tick(worker)
        self.tref = worker.timer.call_repeatedly(self.interval_s(), self.tick, (worker,))

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()


def install(app, *, pool: str, target: str) -> None:
    if not pool:
        return

    class HeartbeatStep(RepeatingStep):
        def interval_s(self) -> float:
            return INTERVAL_S

        def tick(self, worker) -> None:
            from celery.worker.state import active_requests

            beat = Heartbeat(pool=pool, host=this_host(), target=target, version=__version__,
                             capacity=worker.concurrency or 1, busy=len(active_requests),
                             name=worker.hostname or "")
            try:
                held = credential.current()
                envelope = sign_report("heartbeat", held.pool, held.worker, beat.to_dict(),
                                       key=held.worker_keys[0])
                app.send_task(TASK_HEARTBEAT, args=[envelope], queue=CONTROL_QUEUE,
                              expires=INTERVAL_S * 3)
            except Exception as exc:  # no key yet, the broker is away: the next beat tries
                log.warning("heartbeat not sent: %s", exc)

    app.steps["worker"].add(HeartbeatStep)
