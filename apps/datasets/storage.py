"""The control plane's store of datasets (and, later, of outputs): the one named by
ORCH_STORAGE_URL (settings.DATA_STORAGE_URL), made once per URL and shared by every request."""

from __future__ import annotations

import functools
import uuid

from django.conf import settings

from workers.storage import Storage, storage_from_url


def data_storage() -> Storage:
    return _storage_at(settings.DATA_STORAGE_URL)


@functools.cache
def _storage_at(url: str) -> Storage:
    return storage_from_url(url)


def dataset_key(dataset_id: uuid.UUID) -> str:
    """Where a dataset's bytes live in the store: never a name a client chose."""
    return f"datasets/{dataset_id}"
