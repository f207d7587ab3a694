"""The OpenAPI description of the pipelines API where the views alone do not tell it: the
pipeline's name in its URL, and GET /api/pools/, whose answer is built as plain dicts."""

from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

PIPELINE_NAME = OpenApiParameter(
    "name", {"type": "string", "pattern": "^[^/]+$"}, OpenApiParameter.PATH,
    description="The pipeline's name: its file's name in pipelines/ (`hello`).",
)


class PoolWorkerSerializer(serializers.Serializer):
    name = serializers.CharField()
    host = serializers.CharField()
    version = serializers.CharField()
    capacity = serializers.IntegerField()
    busy = serializers.IntegerField()
    last_seen = serializers.DateTimeField()


class PoolOverviewSerializer(serializers.Serializer):
    name = serializers.CharField()
    target = serializers.CharField()
    capacity = serializers.IntegerField()
    status = serializers.ChoiceField(["up", "down"], help_text="down: no live worker.")
    workers = PoolWorkerSerializer(many=True, required=False,
                                   help_text="Live workers (staff only).")
    busy = serializers.IntegerField(required=False, help_text="Busy slots.")
    pending = serializers.IntegerField(required=False)
    queued = serializers.IntegerField(required=False)
    waiting_too_long = serializers.IntegerField(
        required=False, help_text="QUEUED past the pool's queued_limit.")
    running = serializers.IntegerField(required=False)
