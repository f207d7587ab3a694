from rest_framework import serializers

from apps.pipelines.models import Pipeline, PipelineVersion, Pool, Worker


class PipelineVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PipelineVersion
        fields = ["number", "label", "digest", "source_file", "loaded_at"]


class PipelineSerializer(serializers.ModelSerializer):
    """A pipeline as its latest version describes it."""

    version = serializers.IntegerField(source="latest_version.number")
    label = serializers.CharField(source="latest_version.label")
    description = serializers.CharField(source="latest_version.description")
    target = serializers.CharField(source="latest_version.target")
    pool = serializers.CharField(source="latest_version.pool.name")
    run = serializers.JSONField(source="latest_version.run")
    resources = serializers.JSONField(source="latest_version.resources")
    config_schema = serializers.JSONField(source="latest_version.config_schema")
    defaults = serializers.JSONField(source="latest_version.defaults")
    secrets = serializers.JSONField(source="latest_version.secrets")

    class Meta:
        model = Pipeline
        fields = ["name", "version", "label", "description", "target", "pool", "run",
                  "resources", "config_schema", "defaults", "secrets"]


class PipelineDetailSerializer(PipelineSerializer):
    versions = PipelineVersionSerializer(many=True)

    class Meta(PipelineSerializer.Meta):
        fields = [*PipelineSerializer.Meta.fields, "versions"]


class WorkerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Worker
        fields = ["host", "version", "capacity", "busy", "started_at", "last_seen"]


class PoolSerializer(serializers.ModelSerializer):
    class Meta:
        model = Pool
        fields = ["name", "target", "capacity", "queued_limit_s"]
