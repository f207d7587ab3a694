"""The workers' Celery app. Which pool a worker serves comes from ``ORCH_POOL``
(``python -m orchestration_worker --pool NAME`` sets it)."""

from __future__ import annotations

import os

from celery import Celery

from .contract import celery_config

app = Celery("orchestration-worker")
app.conf.update(celery_config())
# By __package__: the same code runs as `workers` (checkout) and `orchestration_worker`.
app.conf.update(include=[f"{__package__}.tasks"])

# Imported for its side effect: the heartbeat boot step joins the worker.
from . import heartbeat  # noqa: E402

heartbeat.install(app, pool=os.environ.get("ORCH_POOL", ""),
                  target=os.environ.get("ORCH_TARGET", ""))
