"""The control plane's Celery app: consumes ``control`` (worker events, heartbeats) and runs
the beat's poll loop. Settings come from Django's, under the ``CELERY_`` namespace."""

import os

from celery import Celery

from orchestration.heartbeats import ConsumerHeartbeatStep
from orchestration.relay_step import RelayStep
from workers.broker_settings import celery_config

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestration.settings")

app = Celery("orchestration")
app.conf.update(celery_config())
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["apps.processes", "apps.pipelines"])
app.steps["worker"].add(ConsumerHeartbeatStep)
app.steps["worker"].add(RelayStep)  # the relay publishes job specs (apps.processes.relay)
