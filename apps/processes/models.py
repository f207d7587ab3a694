"""A process is one run of one pipeline version; its events are the append-only history of
every state it went through, and its log chunks the bounded copy of its output."""

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q, Value
from django.utils import timezone

from workers.contract import ACTIVE_STATES, State

if TYPE_CHECKING:  # the stubs' alias: not installed with the server
    from django_stubs_ext import StrOrPromise

STATE_CHOICES = [(s.value, s.value) for s in State]
ACTIVE_VALUES = sorted(s.value for s in ACTIVE_STATES)
# A POST's ``priority``: its place among its team's waiting processes on its pool.
PRIORITY_MIN, PRIORITY_MAX = -10, 10


@dataclass(frozen=True)
class CreatedRows:
    attempts: list
    dataset_uses: list


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
    # The team it was submitted for: the wall around it. Null only for rows older than teams
    # that no migration could place, and a superuser's run submitted for no team.
    team = models.ForeignKey(
        "teams.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="processes",
    )
    used_config = models.JSONField(default=dict)
    # The sweep that created it with many others in one request (apps.sweeps), if any.
    sweep = models.ForeignKey("sweeps.Sweep", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="processes")
    # What the run chose beyond its config (apps.processes.run_options), within its pool's
    # limits and its pipeline's ``allow``: the resources it asked (as a job spec carries
    # them; those not asked are its pipeline version's), the image (empty: the pipeline's)
    # and plain env values (not secret: shown by the API). Database defaults too, so rows
    # inserted by plain SQL (the benchmark's) need not name them.
    resources = models.JSONField(default=dict, db_default=Value({}, models.JSONField()),
                                 blank=True)
    image = models.CharField(max_length=500, blank=True, default="", db_default="")
    env = models.JSONField(default=dict, db_default=Value({}, models.JSONField()), blank=True)
    # The sbatch options the run set (Slurm pipelines whose ``allow.sbatch`` lets it), within
    # its pool's ``allow_sbatch``; the job gets them over its pipeline's and its pool's.
    sbatch = models.JSONField(default=dict, db_default=Value({}, models.JSONField()),
                              blank=True)
    # The GPU devices admission gave it, on a pool that counts GPUs: held until it ends.
    gpu_devices = models.JSONField(default=list, db_default=Value([], models.JSONField()),
                                   blank=True)
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
    # Higher goes first among its team's waiting processes on its pool. A database default
    # too, so rows inserted by plain SQL (the benchmark's) need not name it.
    priority = models.SmallIntegerField(
        default=0, db_default=0,
        validators=[MinValueValidator(PRIORITY_MIN), MaxValueValidator(PRIORITY_MAX)])
    # When admission (apps.processes.admission) let it go to its target: from then until it
    # ends it holds one of its pool's slots. Null while it waits (PENDING, not admitted), and
    # for runs that had ended before admission existed.
    admitted_at = models.DateTimeField(null=True, blank=True)
    # When its job spec was last sent. A spec waits in its queue while the pool is down, and a
    # worker refuses a signed spec past its age bound: it is signed and sent again before that.
    spec_sent_at = models.DateTimeField(null=True, blank=True)
    missing_since = models.DateTimeField(null=True, blank=True)
    # Its current attempt (apps.processes.attempts): 1, then one more for each retry. A
    # database default too, so rows inserted by plain SQL (the benchmark's) need not name it.
    attempt = models.PositiveIntegerField(default=1, db_default=1)
    # A retry waits for its pipeline's delay: admission takes it no earlier than this.
    not_before = models.DateTimeField(null=True, blank=True)
    # Where the current attempt's output starts in the process's log: a new attempt's job
    # counts its bytes from 0, the process's log goes on after the earlier attempts'.
    log_base = models.BigIntegerField(default=0, db_default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Not a column: the first attempt and dataset uses ``process_create`` made with this row,
    # set on the instance it returns so that the create's answer reads nothing back.
    rows_created: CreatedRows | None = None

    class Meta:
        # A list, not a tuple: the migrations record lists, and makemigrations would take a
        # tuple for changed options.
        ordering: ClassVar[list[str]] = ["-created_at"]
        verbose_name_plural = "processes"
        # The admin's actions declare these (apps.teams.backends grants them by team role).
        permissions: ClassVar[list[tuple[str, "StrOrPromise"]]] = [
            ("stop_process", "Can stop a process"),
            ("rerun_process", "Can re-run a process"),
        ]
        indexes = (
            models.Index(fields=["-created_at"], name="process_created"),
            models.Index(fields=["application", "-created_at"], name="process_app_created"),
            models.Index(fields=["owner", "-created_at"], name="process_owner_created"),
            models.Index(fields=["team", "-created_at"], name="process_team_created"),
            models.Index(fields=["pipeline", "-created_at"], name="process_pipeline_created"),
            models.Index(
                fields=["state", "pool"], name="process_active",
                condition=Q(state__in=ACTIVE_VALUES),
            ),
            # Admission's two questions: who waits on a pool, in each team's order, and who
            # holds its slots.
            models.Index(
                fields=["pool", "team", "-priority", "created_at"], name="process_waiting",
                condition=Q(state=State.PENDING.value, admitted_at__isnull=True),
            ),
            models.Index(
                fields=["pool", "team"], name="process_slots",
                condition=Q(state__in=ACTIVE_VALUES, admitted_at__isnull=False),
            ),
        )

    def __str__(self) -> str:
        return f"{self.pipeline_id and self.pipeline.name} {self.id} {self.state}"


class ProcessAttempt(models.Model):
    """One job on the target for a process: the first, and one more per retry. The current
    attempt's row follows its process as events arrive; an ended attempt's row no longer
    changes."""

    process = models.ForeignKey(Process, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=STATE_CHOICES, default=State.PENDING)
    handle = models.CharField(max_length=512, blank=True)
    host = models.CharField(max_length=255, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    message = models.TextField(blank=True)
    # Why the target ended its job, when it said (workers.contract.END_REASONS).
    reason = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["number"]
        constraints = (
            models.UniqueConstraint(fields=["process", "number"], name="one_row_per_attempt"),
        )

    def __str__(self) -> str:
        return f"attempt {self.number} {self.state}"


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
    # The attempt it belongs to: within one, states only move forward; a retry's event is
    # the first of the next attempt.
    attempt = models.PositiveIntegerField(default=1, db_default=1)

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
