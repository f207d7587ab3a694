"""Pipelines and pools, as loaded from ``pipelines/*.yaml`` and ``pipelines/pools/*.yaml``.

A pipeline keeps every version it ever had: an edited file becomes a new version and a
process points at the version it ran with, never at "the latest".
"""

from typing import ClassVar

from django.db import models

from workers.contract import TARGETS

TARGET_CHOICES = [(kind, kind) for kind in TARGETS]


class Pool(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    target = models.CharField(max_length=32, choices=TARGET_CHOICES)
    capacity = models.PositiveIntegerField(default=4)
    settings = models.JSONField(default=dict, blank=True)
    # Processes QUEUED for longer than this are shown as waiting too long (they do not fail).
    queued_limit_s = models.PositiveIntegerField(default=600)
    source_file = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # A list, not a tuple: the migrations record lists, and makemigrations would take a
        # tuple for changed options.
        ordering: ClassVar[list[str]] = ["name"]

    def __str__(self) -> str:
        return self.name


class Pipeline(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    # False when its file was removed: it stays for the processes that ran it.
    active = models.BooleanField(default=True)
    latest_version = models.ForeignKey(
        "PipelineVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def shown_version(self) -> "PipelineVersion | None":
        """What the API shows as the pipeline: the version a new run uses (the latest not
        withdrawn), or the latest when every one is withdrawn. Reads ``versions``, which the
        API's querysets prefetch."""
        versions = list(self.versions.all())
        runnable = [v for v in versions if not v.withdrawn]
        return max(runnable or versions, key=lambda v: v.number, default=None)


class PipelineVersion(models.Model):
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    label = models.CharField(max_length=50, blank=True, help_text="The file's own version field.")
    digest = models.CharField(max_length=64, help_text="SHA-256 of the parsed definition.")
    description = models.TextField(blank=True)
    target = models.CharField(max_length=32, choices=TARGET_CHOICES)
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="pipeline_versions")
    run = models.JSONField(default=dict)
    resources = models.JSONField(default=dict)
    config_schema = models.JSONField(default=dict)
    defaults = models.JSONField(default=dict)
    # Names of the secret env values a run may be given; their values live sealed on the run.
    secrets = models.JSONField(default=list, blank=True)
    source_file = models.CharField(max_length=255, blank=True)
    loaded_at = models.DateTimeField(auto_now_add=True)
    # A withdrawn version starts no new run (nor a re-run) but stays listed: the processes
    # that ran it still point at it. Set and cleared by the admin's withdraw/restore actions.
    withdrawn = models.BooleanField(default=False)

    class Meta:
        ordering: ClassVar[list[str]] = ["pipeline__name", "-number"]
        constraints = (
            models.UniqueConstraint(fields=["pipeline", "number"], name="one_number_per_version"),
        )

    def __str__(self) -> str:
        return f"{self.pipeline.name} v{self.number}"


class Worker(models.Model):
    """The last heartbeat of one worker of a pool."""

    pool = models.CharField(max_length=100)
    host = models.CharField(max_length=255)
    name = models.CharField(max_length=255, blank=True, default="",
                            help_text="Celery's node name, <name>@<host>")
    target = models.CharField(max_length=32)
    version = models.CharField(max_length=50, blank=True)
    capacity = models.PositiveIntegerField(default=0)
    busy = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField()

    class Meta:
        ordering: ClassVar[list[str]] = ["pool", "host", "name"]
        constraints = (models.UniqueConstraint(fields=["pool", "host", "name"],
                                               name="one_row_per_worker"),)

    def __str__(self) -> str:
        return f"{self.pool}: {self.name or self.host}"


class ServiceHeartbeat(models.Model):
    """The last heartbeat of one part of the control plane on one host: the control consumer
    (recorded when it handles its own heartbeat message, proof that it consumes) or the beat
    (written straight to the database, so a dead consumer does not make the beat look dead)."""

    CONTROL = "control"
    BEAT = "beat"

    name = models.CharField(max_length=32, choices=[(CONTROL, "control consumer"),
                                                    (BEAT, "beat")])
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering: ClassVar[list[str]] = ["name", "host"]
        constraints = (models.UniqueConstraint(fields=["name", "host"],
                                               name="one_row_per_service_and_host"),)

    def __str__(self) -> str:
        return f"{self.name}@{self.host}"


class RefusedReport(models.Model):
    """Messages and events that reached ``control`` and were not believed, counted by reason:
    unsigned or badly signed (forged) ones, and events of a worker that does not hold their
    process. Never applied, never silent: the staff view of GET /api/health/ shows them."""

    reason = models.CharField(max_length=100, unique=True)
    count = models.PositiveBigIntegerField(default=0)
    last_seen = models.DateTimeField()
    # The last one's claimed sender and process, cut short: what it claims is not trusted.
    last_detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["reason"]

    def __str__(self) -> str:
        return f"{self.reason}: {self.count}"
