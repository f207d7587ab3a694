"""The one place a sweep hands its new processes on to be admitted and published: called once
per sweep (never once per process) in the transaction that created them."""

from __future__ import annotations

from apps.processes import relay


def publisher_wake(pool_name: str) -> None:
    """Once the sweep's transaction commits, the relay admits on ``pool_name`` what may go now
    and publishes it in confirmed batches; the rest wait for slots like any PENDING process.
    (One wake-up serves every pool: the relay's round admits on each pool with work.)"""
    relay.wake()
