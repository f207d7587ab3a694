"""A process is one run of one pipeline version; its events are the append-only history of
every state it went through, and its log chunks the bounded copy of its output."""

import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from workers.contract import ACTIVE_STATES, State

STATE_CHOICES = [(s.value, s.value) for s in State]


class Process(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pipeline = models.ForeignKey(
        "pipelines.Pipeline", on_delete=models.PROTECT, related_name="processes"
    )
    pipeline_version = models.ForeignKey(
        "pipelines.PipelineVersion", on_delete=models.PROTECT, related_name="processes"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="processes",
    )
    # The OAuth2 client that started it: the boundary of what a client sees and stops.
    application = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL, null=True, blank=True,
        on_delete=models.SET_NULL, related_name="processes",
    )
    used_config = models.JSONField(default=dict)
    # Secret env values, sealed (workers.secrets): never shown, opened only by the worker.
    # A database default too, so rows inserted by plain SQL (the benchmark's) need not name it.
    secret_env = models.TextField(blank=True, default="", db_default="", editable=False)
    state = models.CharField(max_length=16, choices=STATE_CHOICES, default=State.PENDING)
    target = models.CharField(max_length=32)
    pool = models.CharField(max_length=100)
    # The target's own name for the job (container id, Slurm job, ECS task ARN): opaque.
    handle = models.CharField(max_length=512, blank=True)
    host = models.CharField(max_length=255, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    message = models.TextField(blank=True)
    # Bytes of output received from the target; the next poll asks from here.
    log_size = models.BigIntegerField(default=0)
    log_kept = models.BigIntegerField(default=0)
    log_cursor = models.CharField(max_length=512, blank=True)
    log_truncated = models.BooleanField(default=False)
    # "<client or user>/<Idempotency-Key header>": a retried POST finds the first process.
    idempotency_key = models.CharField(max_length=300, null=True, blank=True, unique=True)
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    # When its job spec was last sent. A spec waits in its queue while the pool is down, and a
    # worker refuses a signed spec past its age bound: it is signed and sent again before that.
    spec_sent_at = models.DateTimeField(null=True, blank=True)
    missing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # A list, not a tuple: the migrations record lists, and makemigrations would take a
        # tuple for changed options.
        ordering: ClassVar[list[str]] = ["-created_at"]
        verbose_name_plural = "processes"
        indexes = (
            models.Index(fields=["-created_at"], name="process_created"),
            models.Index(fields=["application", "-created_at"], name="process_app_created"),
            models.Index(fields=["owner", "-created_at"], name="process_owner_created"),
            models.Index(fields=["pipeline", "-created_at"], name="process_pipeline_created"),
            models.Index(
                fields=["state", "pool"], name="process_active",
                condition=Q(state__in=sorted(s.value for s in ACTIVE_STATES)),
            ),
        )

    def __str__(self) -> str:
        return f"{self.pipeline_id and self.pipeline.name} {self.id} {self.state}"


class ProcessEvent(models.Model):
    """One transition: never updated, never deleted while its process exists."""

    process = models.ForeignKey(Process, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=16, choices=STATE_CHOICES, blank=True)
    to_state = models.CharField(max_length=16, choices=STATE_CHOICES)
    # When it happened (a worker's observation, bounded by apps.processes.clock), and when the
    # control plane applied it: the two differ when events waited in the queue.
    at = models.DateTimeField("happened at", default=timezone.now)
    recorded_at = models.DateTimeField("recorded at", auto_now_add=True)
    source = models.CharField(max_length=255)
    detail = models.TextField(blank=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["at", "id"]
        indexes = (models.Index(fields=["process", "at"], name="event_process_at"),)

    def __str__(self) -> str:
        return f"{self.from_state or '-'} -> {self.to_state}"


class ProcessLogChunk(models.Model):
    """Output bytes ``[offset, end)`` of a process, as text. Middle chunks are dropped once a
    log passes the cap, so its head and its end are kept."""

    process = models.ForeignKey(Process, on_delete=models.CASCADE, related_name="log_chunks")
    offset = models.BigIntegerField()
    end = models.BigIntegerField()
    text = models.TextField()

    class Meta:
        ordering: ClassVar[list[str]] = ["offset"]
        constraints = (
            models.UniqueConstraint(fields=["process", "offset"], name="one_chunk_per_offset"),
        )

    def __str__(self) -> str:
        return f"bytes {self.offset}-{self.end}"
