"""The Celery settings both sides share: the broker (the embedded SQLite one by default, or
RabbitMQ), at-least-once delivery, and how a pool's worker publishes with its own broker user.

``workers.contract`` names what crosses the broker; this module says how both sides connect
to it, so a control plane and its workers never disagree on delivery.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kombu.transport

from .contract import CONTROL_QUEUE
from .environment import load_env, project_root

EMBEDDED_BROKER_URL = "sqlite://"
EMBEDDED_BROKER_FILE = "var/broker.sqlite3"


def celery_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Celery settings both sides share, from ``ORCH_BROKER_URL`` (the environment, then
    ``.env``: see ``workers.environment``).

    The default broker needs no server: the embedded broker, one SQLite file
    (``workers.sqlite_broker``), so the quick start runs on a laptop; deployments use RabbitMQ
    (``amqp://...``). Delivery is at least once: a message is acknowledged after its task ran,
    and a worker that dies mid-task gets it redelivered; every task is safe to run twice.
    """
    if env is None:
        load_env()
        env = os.environ
    url = env.get("ORCH_BROKER_URL") or EMBEDDED_BROKER_URL
    options: dict[str, Any] = {}
    if url.startswith("filesystem"):
        raise ValueError("ORCH_BROKER_URL=filesystem:// is not supported: kombu's file-system "
                         "transport can lose messages (kombu #1551). Use the embedded default "
                         "(sqlite://, or leave ORCH_BROKER_URL unset) or amqp://...")
    if url.startswith("sqlite"):
        options = {"path": str(embedded_broker_path(url)), "polling_interval": 0.1}
        url = EMBEDDED_BROKER_URL
    elif url.startswith(("amqp", "pyamqp")):
        options = {"confirm_publish": True}  # a publish returns once the broker has it
    # A pool's worker (``python -m workers --pool`` sets ORCH_POOL) has its own broker user on
    # RabbitMQ, allowed only its pool's queues and publishing to ``control``
    # (deploy/broker-users.sh): it must not touch any other name.
    own_user = url.startswith(("amqp", "pyamqp")) and bool(env.get("ORCH_POOL"))
    return {
        "broker_url": url,
        "broker_transport_options": options,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # After a broker restart with tasks running, Celery lowers the prefetch count and raises
        # it again from the pool's threads as each task ends: with --pool=threads those calls
        # share the consumer's connection with the main loop and the worker hangs, consuming
        # nothing, with messages unacknowledged (drill 3). Keep the prefetch count as it is.
        "worker_enable_prefetch_count_reduction": False,
        "task_default_queue": CONTROL_QUEUE,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        **(POOL_WORKER_BROKER_SETTINGS if own_user else {}),
    }


def publish_as_pool_worker(name, args, kwargs, options, task=None, **_):
    """Celery's route for what a pool's worker publishes: its events and heartbeats go to the
    ``control`` exchange, declaring nothing (declaring ``control`` would need a right on the
    queue that also lets one delete it); a retry goes back through its own queue's exchange.
    Celery would otherwise send through the default exchange, which reaches every queue."""
    queue = options.get("queue")  # a kombu Queue once Celery has looked the name up
    if name.startswith("orchestration.control.") or getattr(queue, "name", "") == CONTROL_QUEUE:
        return {"exchange": CONTROL_QUEUE, "routing_key": CONTROL_QUEUE, "declare": []}
    if queue is not None:
        return {"exchange": queue.exchange.name, "routing_key": queue.routing_key}
    # A retry of a message that came through a named exchange: Celery names it already.
    return {"declare": []} if options.get("exchange") else None


POOL_WORKER_BROKER_SETTINGS: dict[str, Any] = {
    "task_routes": [publish_as_pool_worker],
    # Remote control (``celery inspect``) needs the ``celery.pidbox`` exchanges: nothing here
    # uses it, and a pool's user may not declare them. (The worker also runs without gossip,
    # mingle and Celery's heartbeat events, which would need ``celeryev``.)
    "worker_enable_remote_control": False,
}



def embedded_broker_path(url: str) -> Path:
    """The embedded broker's file: ``sqlite://`` is var/broker.sqlite3 of the project,
    ``sqlite:///relative/file`` is taken from the project's root, ``sqlite:////abs/file`` is
    absolute (the convention of SQLAlchemy and DATABASE_URL)."""
    kombu.transport.TRANSPORT_ALIASES.setdefault(
        "sqlite", f"{__package__}.sqlite_broker:Transport")
    path = url.removeprefix("sqlite:").removeprefix("//")
    path = path[1:] if path.startswith("/") else path
    return project_root() / (path or EMBEDDED_BROKER_FILE)
