"""The relay (``apps.processes.relay``) runs in the control consumer's process: a boot step
starts its thread once the consumer is up and stops it with the consumer. A control consumer
killed mid-batch loses nothing: what it had not marked QUEUED is published again by the next
relay round, its own after a restart or another consumer's.

Nothing here imports Django models at import time: this module is loaded with the Celery
app, before Django is set up."""

from __future__ import annotations

from celery import bootsteps


class RelayStep(bootsteps.StartStopStep):
    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.relay = None

    def start(self, worker):
        from apps.processes.relay import Relay

        self.relay = Relay()
        self.relay.start()

    def stop(self, worker):
        if self.relay is not None:
            self.relay.stop()
