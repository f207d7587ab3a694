"""Removing what the store holds under ``datasets/`` that no dataset accounts for: an upload
whose bytes were stored but whose row was never made (the web process died between the two),
the bytes of a dataset deleted while the store failed, and a file store's partial writes left
by a crash. Only objects older than ORPHAN_AGE_S go: an upload in flight is younger, and its
row appears within its request.

Listing is the one thing ``workers.storage`` does not offer (a worker never lists): it is done
here for the two stores there are."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from apps.datasets.models import Dataset
from workers.storage import FileStorage, Storage
from workers.storage.base import PARTIAL_PREFIX

DATASETS_PREFIX = "datasets/"
BATCH = 500


@dataclass(frozen=True)
class StoredObject:
    key: str
    modified: float  # seconds since the epoch
    partial: bool = False  # a file store's write in progress (or left by a crash)


def listed(storage: Storage, prefix: str = DATASETS_PREFIX) -> Iterator[StoredObject]:
    """Every object (and partial write) under ``prefix``."""
    if isinstance(storage, FileStorage):
        yield from _files(storage, prefix)
        return
    from workers.storage.s3 import S3Storage

    if isinstance(storage, S3Storage):
        yield from _s3_objects(storage, prefix)
        return
    raise TypeError(f"cannot list {storage!r}")


def _files(storage: FileStorage, prefix: str) -> Iterator[StoredObject]:
    top = storage.root / prefix
    for folder, _dirs, names in os.walk(top, followlinks=False):
        for name in names:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            key = os.path.relpath(path, storage.root).replace(os.sep, "/")
            yield StoredObject(key, info.st_mtime, partial=name.startswith(PARTIAL_PREFIX))


def _s3_objects(storage, prefix: str) -> Iterator[StoredObject]:
    base = f"{storage.prefix}/" if storage.prefix else ""
    pages = storage.client.get_paginator("list_objects_v2").paginate(
        Bucket=storage.bucket, Prefix=base + prefix)
    for page in pages:
        for item in page.get("Contents", []):
            yield StoredObject(item["Key"][len(base):], item["LastModified"].timestamp())


def orphans_sweep(storage: Storage, older_than_s: float, *, dry_run: bool = False) -> list[str]:
    """Remove the orphans under ``datasets/`` older than ``older_than_s``; their keys."""
    cutoff = time.time() - older_than_s
    old = [found for found in listed(storage) if found.modified < cutoff]
    removed = []
    for start in range(0, len(old), BATCH):
        batch = old[start:start + BATCH]
        kept = set(Dataset.objects.filter(
            storage_key__in=[o.key for o in batch if not o.partial],
            deleted_at__isnull=True).values_list("storage_key", flat=True))
        for found in batch:
            if found.key in kept:
                continue
            if not dry_run:
                if found.partial and isinstance(storage, FileStorage):
                    (storage.root / found.key).unlink(missing_ok=True)  # no key names it
                else:
                    storage.delete(found.key)
            removed.append(found.key)
    return removed
