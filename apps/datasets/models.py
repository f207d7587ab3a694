"""A dataset: a file uploaded once for a team, kept in the store (ORCH_STORAGE_URL) under
``storage_key`` and named by its id in the runs that use it.

Deleting one removes its bytes and keeps its row, marked by ``deleted_at``: a process that
used it still names it, and the API answers 404 for it like for any dataset it cannot see."""

import uuid

from django.conf import settings
from django.db import models


class Dataset(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    # Where its bytes are in the store: ``datasets/<id>``.
    storage_key = models.CharField(max_length=1024, unique=True)
    # The team it was uploaded for: the wall around it, as around a process. Null only for a
    # superuser's upload for no team.
    team = models.ForeignKey("teams.Team", null=True, blank=True, on_delete=models.PROTECT,
                             related_name="datasets")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="datasets")
    # The OAuth2 client that uploaded it, when a client did.
    application = models.ForeignKey(settings.OAUTH2_PROVIDER_APPLICATION_MODEL, null=True,
                                    blank=True, on_delete=models.SET_NULL,
                                    related_name="datasets")
    created_at = models.DateTimeField(auto_now_add=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # The processes that name it in their config (one DatasetUse per field): a dataset a live
    # one uses cannot be deleted.
    processes = models.ManyToManyField("processes.Process", related_name="datasets", blank=True,
                                       through="DatasetUse")

    class Meta:
        ordering = ("-created_at", "id")
        indexes = (
            # A team's datasets, newest first (the list), and by name (its filter).
            models.Index(fields=("team", "-created_at"), name="dataset_team_newest"),
            models.Index(fields=("team", "name"), name="dataset_team_name"),
        )

    def __str__(self) -> str:
        return f"{self.name} ({self.pk})"


class DatasetUse(models.Model):
    """A process names a dataset in its config, at ``pointer`` (a JSON pointer: "/input",
    "/files/1"). Recorded with the process, in its transaction; kept after it ends."""

    process = models.ForeignKey("processes.Process", on_delete=models.CASCADE,
                                related_name="dataset_uses")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="uses")
    pointer = models.CharField(max_length=1024)

    class Meta:
        ordering = ("process", "pointer")
        constraints = (
            models.UniqueConstraint(fields=("process", "pointer"), name="one_dataset_per_field"),
        )

    def __str__(self) -> str:
        return f"{self.process_id} {self.pointer} -> {self.dataset_id}"


class ProcessOutput(models.Model):
    """A file a process's job wrote under its output dir, stored by its worker under ``key``
    (``outputs/<process id>/<path>``) and recorded from the event that ended the process."""

    process = models.ForeignKey("processes.Process", on_delete=models.CASCADE,
                                related_name="outputs")
    path = models.CharField(max_length=1024)  # relative to the output dir, "/"-separated
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    key = models.CharField(max_length=1024)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("process", "path")
        constraints = (
            models.UniqueConstraint(fields=("process", "path"), name="one_output_per_path"),
        )

    def __str__(self) -> str:
        return f"{self.process_id}/{self.path}"
