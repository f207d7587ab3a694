from __future__ import annotations

import json

from rest_framework import serializers
from rest_framework.reverse import reverse

from apps.processes.models import Process, ProcessEvent


class StrictCharField(serializers.CharField):
    """A string, and only a string: ``{"pipeline": 7}`` is a wrong type, not "7"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ConfigField(serializers.Field):
    """A JSON object, given as JSON or (form-encoded, as seed 001 posts it) as a JSON string.
    Empty means "the pipeline's defaults"."""

    default_error_messages = {
        "not_json": "Not valid JSON: {error}.",
        "not_object": "Must be a JSON object such as {{\"seconds\": 5}}, not {kind}.",
    }

    def to_internal_value(self, data):
        if data in (None, ""):
            return {}
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                self.fail("not_json", error=exc)
        if not isinstance(data, dict):
            self.fail("not_object", kind=type(data).__name__)
        return data

    def to_representation(self, value):
        return value


class ProcessCreateSerializer(serializers.Serializer):
    pipeline = StrictCharField(max_length=100)
    used_config = ConfigField(required=False, default=dict)
    version = serializers.IntegerField(required=False, min_value=1)

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(
                {name: ["Unknown field; expected pipeline, used_config, version."]
                 for name in sorted(unknown)}
            )
        return attrs


class ProcessSerializer(serializers.ModelSerializer):
    pipeline = serializers.CharField(source="pipeline.name")
    pipeline_version = serializers.IntegerField(source="pipeline_version.number")
    owner = serializers.CharField(source="owner.username", default=None)
    urls = serializers.SerializerMethodField()

    class Meta:
        model = Process
        fields = [
            "id", "pipeline", "pipeline_version", "state", "used_config", "owner", "pool",
            "target", "handle", "host", "exit_code", "message", "log_size", "created_at",
            "queued_at", "submitted_at", "started_at", "finished_at", "updated_at", "urls",
        ]

    def get_urls(self, process):
        request = self.context.get("request")
        return {
            name: reverse(f"process-{name}", args=[process.pk], request=request)
            for name in ("detail", "status", "stop", "events", "logs")
        }


class ProcessStatusSerializer(serializers.ModelSerializer):
    finished = serializers.SerializerMethodField()

    class Meta:
        model = Process
        fields = ["id", "state", "finished", "exit_code", "message", "updated_at"]

    def get_finished(self, process) -> bool:
        return process.finished_at is not None


class ProcessEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProcessEvent
        fields = ["from_state", "to_state", "at", "source", "detail"]
