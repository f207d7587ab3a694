"""The workers' Celery app. Which pool a worker serves comes from ``ORCH_POOL``
(``python -m workers --pool NAME`` sets it)."""

from __future__ import annotations

import os

from celery import Celery

from workers.contract import celery_config

app = Celery("orchestration-worker")
app.conf.update(celery_config())
app.conf.update(include=["workers.tasks"])

# Imported for its side effect: the heartbeat boot step joins the worker.
from workers import heartbeat  # noqa: E402

heartbeat.install(app, pool=os.environ.get("ORCH_POOL", ""),
                  target=os.environ.get("ORCH_TARGET", ""))
