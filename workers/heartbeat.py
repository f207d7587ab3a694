"""Each worker tells the control plane, every few seconds, that it is alive: pool, host,
version, capacity and busy slots, and for a Slurm pool whether its cluster answers and the
slurmrestd API version in use. A pool with no live worker is shown as down. The heartbeat
is signed with the worker's key: the control plane records it under the identity it proves."""

from __future__ import annotations

import logging
import os
import threading
import time

from celery import bootsteps

from . import __version__, credential, poll_stats
from .contract import CLUSTER_TARGETS, CONTROL_QUEUE, TASK_HEARTBEAT, Heartbeat, this_host
from .signing import sign_report

log = logging.getLogger(__name__)

INTERVAL_S = float(os.environ.get("ORCH_HEARTBEAT_INTERVAL_S", "10"))
# How often a Slurm pool's worker asks its cluster again (the beats between repeat the answer).
CLUSTER_CHECK_S = float(os.environ.get("ORCH_CLUSTER_CHECK_S", "30"))


class ClusterCheck:
    """The pool's cluster as its executor sees it (``Executor.cluster_health``), asked at most
    every CLUSTER_CHECK_S with the settings the pool's last message carried, in a thread of
    its own: a cluster that takes its time to answer never delays a heartbeat."""

    def __init__(self, pool: str, target: str):
        self.pool, self.target = pool, target
        self.report: dict | None = None
        self.asked = -CLUSTER_CHECK_S
        self.running: threading.Thread | None = None

    def __call__(self) -> dict | None:
        """The latest report (None before the first answer); starts the next check when due.
        Nothing is asked before the pool's first message: its settings (the cluster's
        address, the commands' place) come with it, and a guess from the worker's environment
        could call a good cluster unreachable."""
        from .executors import last_settings

        if last_settings(self.pool) is None:
            return None
        due = time.monotonic() - self.asked >= CLUSTER_CHECK_S
        if due and (self.running is None or not self.running.is_alive()):
            self.asked = time.monotonic()
            self.running = threading.Thread(target=self.check, name="cluster-check",
                                            daemon=True)
            self.running.start()
        return self.report

    def check(self) -> None:
        from .executors import get_executor, last_settings

        try:
            settings = last_settings(self.pool)
            executor = get_executor(self.target, self.pool, settings)
            self.report = executor.cluster_health()
        except Exception as exc:  # a cluster check never stops the heartbeat
            self.report = {"reachable": False, "rest_api_version": None,
                           "detail": f"cluster check failed: {exc}"}




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

    cluster = ClusterCheck(pool, target) if target in CLUSTER_TARGETS else None

    class HeartbeatStep(RepeatingStep):
        def interval_s(self) -> float:
            return INTERVAL_S

        def tick(self, worker) -> None:
            from celery.worker.state import active_requests

            beat = Heartbeat(pool=pool, host=this_host(), target=target, version=__version__,
                             capacity=worker.concurrency or 1, busy=len(active_requests),
                             name=worker.hostname or "", polls=poll_stats.snapshot(pool),
                             cluster=cluster() if cluster is not None else None)
            try:
                held = credential.current()
                envelope = sign_report("heartbeat", held.pool, held.worker, beat.to_dict(),
                                       key=held.worker_keys[0])
                app.send_task(TASK_HEARTBEAT, args=[envelope], queue=CONTROL_QUEUE,
                              expires=INTERVAL_S * 3)
            except Exception as exc:  # no key yet, the broker is away: the next beat tries
                log.warning("heartbeat not sent: %s", exc)

    app.steps["worker"].add(HeartbeatStep)
