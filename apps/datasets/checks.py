"""``manage.py check`` (and ``migrate``, so ``python -m orchestration prepare``) refuses a storage
URL that names no store, with the setting's name, instead of a 500 at the first upload."""

from __future__ import annotations

from django.conf import settings
from django.core import checks

from workers.storage import StorageError, storage_from_url


@checks.register(checks.Tags.compatibility)
def storage_url_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    try:
        storage_from_url(settings.DATA_STORAGE_URL)
    except (StorageError, ImportError) as exc:
        return [checks.Error(f"ORCH_STORAGE_URL: {exc}", id="datasets.E001",
                             hint="file:///absolute/path or s3://bucket/prefix")]
    if settings.DATASET_MAX_BYTES < 1:
        return [checks.Error("ORCH_DATASET_MAX_BYTES must be at least 1.", id="datasets.E002")]
    return []
