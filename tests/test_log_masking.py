"""A secret value that reaches a log line is masked: on a worker (the filter its start puts on
Celery's handlers, fed by the values the worker opened) and on the control plane (the filter
LOGGING puts on the console, fed by the values the web process sealed)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from apps.pipelines.models import PipelineVersion
from workers.log_masking import SecretMaskingFilter
from workers.secrets import seal

ROOT = Path(__file__).resolve().parents[1]
VALUE = "masked-s3cr3t-9c1e"

# A worker as `python -m workers` starts one (Celery's logging set-up), which opens a job's
# secrets and then, wrongly, logs one in a message, an argument and an exception.
WORKER = """
import logging, sys
from workers.celery_app import app
from workers.secrets import unseal
app.log.setup(loglevel="INFO", redirect_stdouts=False)
opened = unseal(sys.argv[1], process_id=sys.argv[2], pool="local")
log = logging.getLogger("workers.executors.slurm")
log.warning("submitting with token %s", opened["API_TOKEN"])
log.warning("token=" + opened["API_TOKEN"])
try:
    raise RuntimeError("bad token " + opened["API_TOKEN"])
except RuntimeError:
    log.exception("submit failed")
"""


def test_a_workers_log_lines_mask_the_secrets_it_opened(monkeypatch):
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("ORCH_SECRETS_KEY", key)
    process_id = str(uuid.uuid4())
    sealed = seal({"API_TOKEN": VALUE}, process_id=process_id, pool="local")
    env = {**os.environ, "ORCH_SECRETS_KEY": key, "ORCH_POOL": "local", "ORCH_TARGET": "local"}
    done = subprocess.run([sys.executable, "-c", WORKER, sealed, process_id], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert VALUE not in output
    assert "submitting with token ****" in output
    assert "token=****" in output
    assert "RuntimeError: bad token ****" in output


@pytest.fixture
def console():
    """The output of the console handler LOGGING configured, for this test."""
    [handler] = [h for h in logging.getLogger().handlers
                 if any(isinstance(f, SecretMaskingFilter) for f in h.filters)]
    out = io.StringIO()
    previous = handler.setStream(out)
    yield out
    handler.setStream(previous)


@pytest.mark.django_db
def test_the_control_planes_log_lines_mask_a_posted_secret(api, console, monkeypatch):
    monkeypatch.setenv("ORCH_SECRETS_KEY", Fernet.generate_key().decode())
    PipelineVersion.objects.filter(pipeline__name="hello").update(secrets=["API_TOKEN"])
    response = api.post("/api/processes/", {"pipeline": "hello", "secrets": {"API_TOKEN": VALUE}},
                        format="json")
    assert response.status_code == 201, response.content

    log = logging.getLogger("apps.processes.services")
    log.warning("creating with %s", {"API_TOKEN": VALUE})
    try:
        raise ValueError(f"refused {VALUE}")
    except ValueError:
        log.exception("create failed")
    logging.getLogger("django.request").error("request with token=%s", VALUE)
    text = console.getvalue()
    assert VALUE not in text
    assert "creating with {'API_TOKEN': '****'}" in text
    assert "ValueError: refused ****" in text
    assert "request with token=****" in text


@pytest.mark.django_db
def test_djangos_request_log_masks_too(api, monkeypatch):
    """runserver logs each request through a handler of Django's own, not the root's."""
    from django.utils.log import ServerFormatter

    monkeypatch.setenv("ORCH_SECRETS_KEY", Fernet.generate_key().decode())
    seal({"API_TOKEN": VALUE}, process_id=uuid.uuid4(), pool="local")  # as a POST would
    [handler] = [h for h in logging.getLogger("django.server").handlers
                 if isinstance(h.formatter, ServerFormatter)]
    out = io.StringIO()
    previous = handler.setStream(out)
    try:
        logging.getLogger("django.server").info('"GET /api/?token=%s HTTP/1.1" 200 2', VALUE)
    finally:
        handler.setStream(previous)
    assert "token=****" in out.getvalue()
    assert VALUE not in out.getvalue()
