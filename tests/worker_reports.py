"""What a worker sends back, made by hand for tests: events and heartbeats signed with the key
the control plane derives for a worker identity, as ``workers.events`` signs them."""

from __future__ import annotations

from workers.contract import Event
from workers.signing import Sender, master_keys, sign_report, worker_key

# The worker of the local pool on host node1: the tests' processes run on the local pool.
LOCAL_WORKER = Sender(pool="local", worker="local@node1")


def signed(kind: str, body, sender: Sender = LOCAL_WORKER, *, key: bytes | None = None) -> dict:
    """An envelope of ``body`` signed as ``sender`` (or with ``key``, a forger's)."""
    key = key or worker_key(master_keys(create=True)[0], sender.pool, sender.worker)
    return sign_report(kind, sender.pool, sender.worker, body, key=key)


def signed_events(events: list[Event], sender: Sender = LOCAL_WORKER, **kwargs) -> dict:
    return signed("events", [e.to_dict() for e in events], sender, **kwargs)
