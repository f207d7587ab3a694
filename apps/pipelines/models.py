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
    # Host-bound targets (local, Docker): once every worker of a host has been silent this
    # long, the processes whose jobs live there end LOST (apps.processes.lost_hosts).
    host_lost_after_s = models.PositiveIntegerField(default=600)
    # Who may use it and how much, from its file (apps.processes.admission reads them): the
    # slugs of the teams it is open to (null: every team); per team (or ``default``) the most
    # processes ``running`` (holding a slot) and ``waiting``; each team's weight in the fair
    # share (default 1).
    teams = models.JSONField(null=True, blank=True, default=None)
    quotas = models.JSONField(default=dict, blank=True)
    weights = models.JSONField(default=dict, blank=True)
    # What a run may ask here, from its file (apps.processes.run_options): the most of each
    # resource (as a job spec carries them: cpus, memory_mb, gpus, time_limit_s), the image
    # patterns (fnmatch) a run may name, and the GPU device ids admission hands out (empty:
    # the pool does not count GPUs).
    max_resources = models.JSONField(default=dict, blank=True)
    images = models.JSONField(default=list, blank=True)
    gpu_devices = models.JSONField(default=list, blank=True)
    # Slurm pools, from their file (workers.sbatch_options): the sbatch options
    # every job gets unless its pipeline or run sets them, and what those may set.
    sbatch = models.JSONField(default=dict, blank=True)
    allow_sbatch = models.JSONField(default=dict, blank=True)
    # A paused pool admits nothing (its running jobs go on). Set by the API's pause and resume
    # and the admin's actions, never by the file: loading the files leaves it as it is.
    paused = models.BooleanField(default=False)
    source_file = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # A list, not a tuple: the migrations record lists, and makemigrations would take a
        # tuple for changed options.
        ordering: ClassVar[list[str]] = ["name"]

    def __str__(self) -> str:
        return self.name

    def open_to(self, team_slug: str | None) -> bool:
        """Whether a process of the team ``team_slug`` may run here (None: a superuser's run
        for no team, which every pool takes)."""
        return self.teams is None or team_slug is None or team_slug in self.teams

    def quota(self, team_slug: str | None, kind: str) -> int | None:
        """The most processes of ``kind`` (``running`` or ``waiting``) the team may have here:
        its own entry, else ``default``; None when there is no such limit (and for no team)."""
        if team_slug is None:
            return None
        own = self.quotas.get(team_slug) or {}
        return own.get(kind, (self.quotas.get("default") or {}).get(kind))

    def weight(self, team_slug: str | None) -> float:
        """The team's weight in the fair share of this pool (default 1)."""
        return float(self.weights.get(team_slug, 1)) if team_slug is not None else 1.0


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
    # ``retry:`` of its file (apps.pipelines.retries.parse_retry); null: never retried.
    retry = models.JSONField(null=True, blank=True, default=None)
    # What a run may choose beyond its config: {"image": true, "env": [NAME, ...] or true,
    # "sbatch": [OPTION, ...] or true}.
    allow = models.JSONField(default=dict, blank=True)
    # Its file's sbatch options (Slurm pipelines), within its pool's allow_sbatch.
    sbatch = models.JSONField(default=dict, blank=True)
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
    polls = models.JSONField(default=dict, blank=True,
                             help_text="Its poll cycles since it started: cycles, failures, "
                                       "seconds, last_seconds")
    cluster = models.JSONField(
        null=True, blank=True,
        help_text="A Slurm pool's cluster as this worker last saw it: reachable, "
                  "rest_api_version, detail")
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
