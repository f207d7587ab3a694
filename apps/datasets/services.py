"""Changing datasets: keeping an uploaded file, and deleting one. Each records itself in the
audit, in the transaction that changes the row.

The bytes and the row cannot share a transaction, so each change orders them to leave no
dataset without its bytes: an upload's bytes are in the store before its row is made, and
removed again when it is not (apps.datasets.uploads streams them there); a delete marks the
row first and removes the bytes once that is committed (a store that fails then leaves
unreachable bytes, logged, never a dataset without them)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import APIException

from apps.audit.models import Action
from apps.audit.services import audit_record
from apps.datasets.models import Dataset
from apps.datasets.selectors import dataset_users
from apps.datasets.storage import data_storage
from apps.datasets.uploads import StoredUpload
from apps.teams.access import Caller
from workers.storage import StorageError

log = logging.getLogger(__name__)

# Processes named in a refusal at most: the caller sees them in GET /api/processes/.
NAMED_USERS = 5


class DatasetInUse(APIException):
    """A process that has not finished uses the dataset: a 409."""

    status_code = 409
    default_code = "in_use"


def dataset_create(*, stored: StoredUpload, name: str, description: str = "", team=None,
                   owner=None, application=None, actor: Caller | None = None) -> Dataset:
    """The dataset of ``stored`` (an upload already in the store) for ``team``. When its row
    cannot be made, the bytes are removed: nothing is kept."""
    try:
        with transaction.atomic():
            dataset = Dataset.objects.create(
                id=stored.dataset_id, name=name, description=description, size=stored.size,
                sha256=stored.sha256, storage_key=stored.key, team=team, owner=owner,
                application=application)
            audit_record(actor, Action.UPLOAD, team=team, target=f"dataset {dataset.pk}",
                         detail={"name": name, "size": stored.size, "sha256": stored.sha256})
    except BaseException:
        stored.discard()
        raise
    return dataset


def dataset_delete(dataset: Dataset, *, actor: Caller | None = None) -> None:
    """Delete ``dataset``: its bytes go, its row stays marked deleted (the processes that
    used it still name it). DatasetInUse (409) while a process that has not finished uses
    it; nothing changes then."""
    with transaction.atomic():
        locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
        if locked.deleted_at is not None:  # a delete of its own got there first
            return
        users = dataset_users(locked)
        if count := users.count():
            named = ", ".join(str(pk) for pk in users.values_list("pk", flat=True)[:NAMED_USERS])
            more = f" and {count - NAMED_USERS} more" if count > NAMED_USERS else ""
            raise DatasetInUse(f"The dataset is used by {count} process(es) that have not "
                               f"finished: {named}{more}. Stop them, or wait until they "
                               "finish, then delete it.")
        locked.deleted_at = timezone.now()
        locked.save(update_fields=["deleted_at"])
        audit_record(actor, Action.DELETE, team=locked.team, target=f"dataset {locked.pk}",
                     detail={"name": locked.name, "size": locked.size})
    try:
        data_storage().delete(locked.storage_key)
    except StorageError:
        log.exception("dataset %s deleted, but its bytes stay in the store under %s",
                      locked.pk, locked.storage_key)
