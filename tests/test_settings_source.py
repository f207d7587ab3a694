"""One settings source: a setting written only in ``.env`` means the same to the web server,
the control consumer, the beat and a worker, each started as its own process the way the
deploy scripts start it (nothing in the environment but the file's location)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from cryptography.fernet import Fernet

from workers.secrets import seal

ROOT = Path(__file__).resolve().parents[1]

WEB = """
import django, json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestration.settings")
django.setup()
from django.conf import settings
from orchestration.celery import app
print(json.dumps({"database": settings.DATABASES["default"]["NAME"], "debug": settings.DEBUG,
                  "log_cap": settings.LOG_CAP_BYTES,
                  "broker": app.conf.broker_transport_options.get("path")}))
"""
# `celery -A orchestration worker|beat` imports the Celery app before Django's settings.
CONTROL = """
import json
from orchestration.celery import app
poll = app.conf.beat_schedule["poll-pools"]["schedule"].total_seconds()
print(json.dumps({"broker": app.conf.broker_transport_options.get("path"), "poll": poll}))
"""
WORKER = """
import json
from workers.celery_app import app
from workers import heartbeat, secrets
opened = secrets.unseal(SEALED, process_id="p1", pool="local")
print(json.dumps({"broker": app.conf.broker_transport_options.get("path"),
                  "heartbeat": heartbeat.INTERVAL_S, "key": opened["K"]}))
"""


def clean_env(env_file: Path) -> dict[str, str]:
    """What a process gets from a unit file: no ORCH_*, DATABASE_URL or Django settings."""
    keep = {"PATH", "HOME", "LANG", "TMPDIR"}
    return {**{k: v for k, v in os.environ.items() if k in keep}, "ORCH_ENV_FILE": str(env_file)}


def run(code: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_side_reads_the_same_dot_env(tmp_path, monkeypatch):
    key = Fernet.generate_key().decode()
    broker, database = tmp_path / "broker.sqlite3", tmp_path / "db.sqlite3"
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"DATABASE_URL=sqlite:///{database}\n"
        f"ORCH_BROKER_URL=sqlite:///{broker}\n"
        "DEBUG=false\nORCH_LOG_CAP_BYTES=12345\nORCH_POLL_INTERVAL_S=7\n"
        f"ORCH_HEARTBEAT_INTERVAL_S=3\nORCH_SECRETS_KEY={key}\n"
    )
    env = clean_env(env_file)

    web = run(WEB, env)
    assert web == {"database": str(database), "debug": False, "log_cap": 12345,
                   "broker": str(broker)}
    assert run(CONTROL, env) == {"broker": str(broker), "poll": 7.0}
    # the worker opens what the key in .env sealed
    monkeypatch.setenv("ORCH_SECRETS_KEY", key)
    sealed = seal({"K": "opened"}, process_id="p1", pool="local")
    worker = run(WORKER.replace("SEALED", repr(sealed)), env)
    assert worker == {"broker": str(broker), "heartbeat": 3.0, "key": "opened"}

    # the environment still wins over the file
    assert run(CONTROL, {**env, "ORCH_POLL_INTERVAL_S": "5"})["poll"] == 5.0


def test_a_worker_started_with_only_dot_env_reports_on_the_broker_it_names(tmp_path):
    broker = tmp_path / "broker.sqlite3"
    env_file = tmp_path / ".env"
    # A worker signs its heartbeat: its key comes from the file too (the checkout may have none).
    env_file.write_text(f"ORCH_BROKER_URL=sqlite:///{broker}\nORCH_HEARTBEAT_INTERVAL_S=1\n"
                        f"ORCH_WORK_ROOT={tmp_path / 'work'}\nORCH_SIGNING_KEYS=settings-test\n")
    worker = subprocess.Popen([sys.executable, "-m", "workers", "--pool", "local",
                               "--name", f"settings-test-{os.getpid()}"],
                              cwd=ROOT, env=clean_env(env_file), stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "worker.log", "w"))  # noqa: SIM115
    try:
        deadline, beats = time.monotonic() + 60, 0
        while beats == 0 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.5)
            try:
                with sqlite3.connect(broker) as db:
                    beats = db.execute("SELECT count(*) FROM message WHERE queue = 'control'"
                                       " AND payload LIKE '%heartbeat%'").fetchone()[0]
            except sqlite3.OperationalError:  # not created yet
                continue
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        assert beats > 0, "the worker did not send its heartbeat to the broker .env names"
    finally:
        worker.terminate()
        worker.wait(timeout=30)
