"""The workers' Celery app. Which pool a worker serves comes from ``ORCH_POOL``
(``python -m orchestration_worker --pool NAME`` sets it)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from . import log_masking
from .broker_settings import celery_config

app = Celery("orchestration-worker")
app.conf.update(celery_config())
# By __package__: the same code runs as `workers` (checkout) and `orchestration_worker`.
app.conf.update(include=[f"{__package__}.tasks"])

# Imported for its side effect: the heartbeat boot step joins the worker.
from . import heartbeat  # noqa: E402


@after_setup_logger.connect
@after_setup_task_logger.connect
def mask_secrets_in_logs(logger=None, **_):
    """Mask every secret this worker opens, on every handler Celery set up."""
    log_masking.install_everywhere()


heartbeat.install(app, pool=os.environ.get("ORCH_POOL", ""),
                  target=os.environ.get("ORCH_TARGET", ""))
