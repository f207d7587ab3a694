"""Datasets named in a process's config: the fields its pipeline's schema marks
``"format": "dataset"`` (a string, or an array of strings), each holding a dataset's id.

A POST (and a re-run) that names an id that is not a present dataset of the process's team is
a 400 naming the field as config errors are named (``used_config.files.1``); unknown, deleted
and another team's ids get the same words, so the answer never says whether a dataset exists
elsewhere. The datasets a process names are recorded with it (``DatasetUse``), under row locks
on them, so a delete that runs at the same moment either sees the use or happens first and
refuses the process."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError

from apps.datasets.config_fields import DatasetRef
from apps.datasets.models import Dataset, DatasetUse


def _dataset_id(value: Any) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _present(team, ids: set[uuid.UUID]):
    datasets = Dataset.objects.filter(pk__in=ids, deleted_at__isnull=True)
    return datasets.filter(team=team) if team is not None else datasets.filter(team__isnull=True)


def _not_found(ref: DatasetRef) -> str:
    return (f"{ref.field}: no dataset {ref.value!r} in the process's team (it is unknown, "
            "deleted, or another team's).")


def ref_errors(refs: list[DatasetRef], team) -> list[str]:
    """One message per value that names no present dataset of ``team``."""
    ids = {found for ref in refs if (found := _dataset_id(ref.value)) is not None}
    present = set(_present(team, ids).values_list("pk", flat=True)) if ids else set()
    return [_not_found(ref) for ref in refs if _dataset_id(ref.value) not in present]


def uses_record(process, refs: list[DatasetRef]) -> list[DatasetUse]:
    """Record that ``process`` (just created, in the caller's transaction) uses the datasets
    of ``refs``. Locks them first and checks them again: one deleted since the first check is
    a ValidationError naming its field, and the whole creation rolls back."""
    if not refs:
        return []
    ids = {found for ref in refs if (found := _dataset_id(ref.value)) is not None}
    # In id order: two creations that name the same datasets lock them in the same order.
    locked = {d.pk: d for d in _present(process.team, ids).select_for_update().order_by("pk")}
    missing = [_not_found(ref) for ref in refs if _dataset_id(ref.value) not in locked]
    if missing:
        raise ValidationError({"used_config": missing})
    uses = [DatasetUse(process=process, dataset=locked[_dataset_id(ref.value)],
                       pointer=ref.pointer) for ref in refs]
    return DatasetUse.objects.bulk_create(uses)
