"""The OpenAPI description of the pipelines API where the views alone do not tell it: the
pipeline's and pool's names in their URLs, and the pools' answers, built as plain dicts."""

from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

PIPELINE_NAME = OpenApiParameter(
    "name", {"type": "string", "pattern": "^[^/]+$", "maxLength": 100}, OpenApiParameter.PATH,
    description="The pipeline's name: its file's name in pipelines/ (`hello`).",
)
POOL_NAME = OpenApiParameter(
    "name", {"type": "string", "pattern": "^[^/]+$", "maxLength": 100}, OpenApiParameter.PATH,
    description="The pool's name: its file's name in pipelines/pools/ (`local`).",
)

QUEUE_PAGES = [
    OpenApiParameter("page", {"type": "integer", "minimum": 1}, description="The page, from 1."),
    OpenApiParameter("page_size", {"type": "integer", "minimum": 1, "maximum": 500},
                     description="Entries a page, up to 500 (default 50)."),
]


class PoolWorkerSerializer(serializers.Serializer):
    name = serializers.CharField()
    host = serializers.CharField()
    version = serializers.CharField()
    capacity = serializers.IntegerField()
    busy = serializers.IntegerField()
    last_seen = serializers.DateTimeField()


class PoolClusterSerializer(serializers.Serializer):
    reachable = serializers.BooleanField(
        help_text="The cluster answered (slurmrestd with an API version this worker speaks, "
                  "or scontrol ping).")
    rest_api_version = serializers.CharField(
        allow_null=True, help_text="The slurmrestd API version in use (slurm_rest pools).")
    detail = serializers.CharField(required=False, help_text="What the worker saw (staff only).")


class PoolOverviewSerializer(serializers.Serializer):
    name = serializers.CharField()
    target = serializers.CharField()
    capacity = serializers.IntegerField(help_text="The most processes holding a slot at once.")
    paused = serializers.BooleanField(help_text="A paused pool admits nothing new.")
    status = serializers.ChoiceField(
        ["up", "down"], help_text="down: no live worker, or its workers cannot use the pool's "
                                  "Slurm cluster (see cluster).")
    cluster = PoolClusterSerializer(
        required=False, help_text="Slurm pools: the cluster as their freshest worker saw it.")
    workers_alive = serializers.IntegerField(help_text="How many workers of it are alive.")
    workers = PoolWorkerSerializer(many=True, required=False,
                                   help_text="Live workers (staff only).")
    busy = serializers.IntegerField(required=False, help_text="Busy slots.")
    pending = serializers.IntegerField(required=False)
    queued = serializers.IntegerField(required=False)
    waiting_too_long = serializers.IntegerField(
        required=False, help_text="QUEUED past the pool's queued_limit.")
    waiting = serializers.IntegerField(help_text="Waiting for admission (PENDING, not admitted).")
    running = serializers.IntegerField(
        help_text="Holding a slot: admitted and not ended (PENDING being published, QUEUED, "
                  "SUBMITTED, RUNNING, STOPPING); at most capacity.")
    on_target = serializers.IntegerField(help_text="SUBMITTED, RUNNING or STOPPING.")
    gpus = serializers.IntegerField(required=False,
                                    help_text="GPUs the pool counts (only a pool that does).")
    gpus_in_use = serializers.IntegerField(
        required=False, help_text="GPUs held by admitted processes not yet ended.")


class QueueEntrySerializer(serializers.Serializer):
    """A waiting process at its place in its pool's queue."""

    id = serializers.UUIDField()
    pipeline = serializers.CharField(allow_null=True)
    team = serializers.CharField(allow_null=True, help_text="The team's slug.")
    priority = serializers.IntegerField(min_value=-10, max_value=10)
    created_at = serializers.DateTimeField()
    waiting_for = serializers.CharField(help_text="Why it waits.")
    position = serializers.IntegerField(help_text="Its place in the whole queue; 1 goes next.")


class QueuePageSerializer(serializers.Serializer):
    """A page of a pool's queue, paginated as the processes' list is."""

    count = serializers.IntegerField()
    count_exact = serializers.BooleanField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = QueueEntrySerializer(many=True)


class PoolPausedSerializer(serializers.Serializer):
    name = serializers.CharField()
    paused = serializers.BooleanField()
