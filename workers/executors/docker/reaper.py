"""Orphan reaping: a pool's containers whose process the control plane no longer polls (it
ended while the worker was away, or its process was deleted) are removed once they are old
enough that no submission can still be on its way to the control plane."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from .container_spec import LABEL_POOL, LABEL_PROCESS, attempt_of
from .engine import Engine

log = logging.getLogger(__name__)

ORPHAN_GRACE_S = 600  # how old an unpolled container must be before the reaper removes it


def reap_orphans(engine: Engine, pool: str, known_process_ids: Iterable[str], grace_s: float,
                 forget: Callable[[str, int], None]) -> list[str]:
    """Remove ``pool``'s containers older than ``grace_s`` whose process is not in
    ``known_process_ids``, and ``forget`` (clean the run dir of) each one's process. Returns
    the reaped process ids."""
    known = set(known_process_ids)
    now = time.time()
    reaped = []
    for found in engine.containers(**{LABEL_POOL: pool}):
        process_id = (found.get("Labels") or {}).get(LABEL_PROCESS) or ""
        if process_id in known or now - float(found.get("Created") or now) < grace_s:
            continue
        log.warning("removing orphan container %s of process %s (%s)",
                    found["Id"][:12], process_id, found.get("Status"))
        engine.remove(found["Id"])
        if process_id:
            forget(process_id, attempt_of(found.get("Labels")))
        reaped.append(process_id)
    return reaped
