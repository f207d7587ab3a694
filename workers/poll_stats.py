"""What this worker's polls of its target cost: cycles, failures and seconds, counted since
the worker started and sent with each heartbeat, so `/metrics` can show poll cycle time and
failures per pool (Prometheus reads a restarted worker's lower count as a counter reset)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass


@dataclass
class PollStats:
    cycles: int = 0  # polls answered by the target or failed
    failures: int = 0  # polls the target did not answer (ExecutorError)
    seconds: float = 0.0  # time spent asking the target, all cycles
    last_seconds: float = 0.0  # the latest cycle's time

    def to_dict(self) -> dict:
        return asdict(self)


_stats: dict[str, PollStats] = {}
_lock = threading.Lock()


def record(pool: str, seconds: float, *, failed: bool) -> None:
    """Count one poll cycle of ``pool`` that took ``seconds``."""
    with _lock:
        stats = _stats.setdefault(pool, PollStats())
        stats.cycles += 1
        stats.failures += int(failed)
        stats.seconds += seconds
        stats.last_seconds = seconds


def snapshot(pool: str) -> dict:
    """This worker's counts for ``pool`` (zeros before its first poll)."""
    with _lock:
        return _stats.get(pool, PollStats()).to_dict()
