"""A process's outputs: the files its job wrote under ``ORCH_OUTPUT_DIR``, stored by its worker
under ``outputs/<process id>/`` before it reported the end, and recorded here from that event,
in the transaction that ends the process (``apps.processes.events``).

An entry is believed only for what it can be: a relative path that is a key, stored under the
process's own prefix. A worker cannot make an output of another process's object, or of a
dataset's. Recording is idempotent: one row per (process, path), and a redelivered event adds
nothing."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from apps.datasets.jobs import outputs_prefix
from apps.datasets.models import ProcessOutput
from apps.datasets.storage import data_storage
from workers.storage.base import BadKey, checked_key

log = logging.getLogger(__name__)


def _valid(process, entry: Any) -> ProcessOutput | None:
    if not isinstance(entry, dict):
        return None
    path, size, sha256 = entry.get("path"), entry.get("size"), entry.get("sha256")
    if not isinstance(path, str) or not isinstance(size, int) or isinstance(size, bool):
        return None
    if size < 0 or not isinstance(sha256, str) or len(sha256) != 64:
        return None
    try:
        checked_key(path)
    except BadKey:
        return None
    key = outputs_prefix(process.pk) + path
    if entry.get("key") != key:
        return None
    return ProcessOutput(process=process, path=path, size=size, sha256=sha256.lower(), key=key)


def outputs_record(process, entries: list[dict[str, Any]] | None) -> int:
    """Record the outputs an ending event carries; returns how many were new. Entries that
    are no output of this process are logged and left out."""
    rows = []
    for entry in entries or []:
        row = _valid(process, entry)
        if row is None:
            log.warning("process %s: an output entry refused: %.200r", process.pk, entry)
            continue
        rows.append(row)
    if not rows:
        return 0
    before = ProcessOutput.objects.filter(process=process).count()
    ProcessOutput.objects.bulk_create(rows, ignore_conflicts=True)
    return ProcessOutput.objects.filter(process=process).count() - before


def outputs_forget(process_ids) -> None:
    """Remove the stored bytes of the outputs of ``process_ids``, once the transaction that
    deletes the processes (and, by cascade, their output rows) commits: a rollback keeps
    both. An object that cannot be removed now is left to the operator (logged)."""
    keys = list(ProcessOutput.objects.filter(process_id__in=list(process_ids))
                .values_list("key", flat=True))
    if keys:
        transaction.on_commit(lambda: _delete_objects(keys))


def _delete_objects(keys: list[str]) -> None:
    store = data_storage()
    for key in keys:
        try:
            store.delete(key)
        except OSError as exc:
            log.warning("output %s of a deleted process not removed: %s", key, exc)
