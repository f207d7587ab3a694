from rest_framework import serializers

from apps.pipelines.models import Pipeline, PipelineVersion, Pool, Worker


class PipelineVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PipelineVersion
        fields = ("number", "label", "digest", "source_file", "loaded_at", "withdrawn")


class PipelineSerializer(serializers.ModelSerializer):
    """A pipeline as the version a new run uses describes it (the latest not withdrawn; the
    latest, with ``withdrawn`` true, when every version is)."""

    version = serializers.IntegerField(source="shown_version.number")
    # A declared field named like Field's own ``label`` attribute: DRF's metaclass moves it into
    # the declared fields, so nothing clashes at run time; the stubs see a str attribute.
    label = serializers.CharField(source="shown_version.label")  # type: ignore[assignment]
    description = serializers.CharField(source="shown_version.description")
    target = serializers.CharField(source="shown_version.target")
    pool = serializers.CharField(source="shown_version.pool.name")
    run = serializers.JSONField(source="shown_version.run")
    resources = serializers.JSONField(source="shown_version.resources")
    config_schema = serializers.JSONField(source="shown_version.config_schema")
    defaults = serializers.JSONField(source="shown_version.defaults")
    secrets = serializers.JSONField(source="shown_version.secrets")
    sbatch = serializers.JSONField(source="shown_version.sbatch", help_text=(
        "Slurm pipelines: the sbatch options its file sets (over its pool's defaults)."))
    withdrawn = serializers.BooleanField(source="shown_version.withdrawn")

    class Meta:
        model = Pipeline
        fields: tuple[str, ...] = (
            "name", "version", "label", "description", "target", "pool", "run", "resources",
            "config_schema", "defaults", "secrets", "sbatch", "withdrawn")


class PipelineDetailSerializer(PipelineSerializer):
    versions = PipelineVersionSerializer(many=True)

    class Meta(PipelineSerializer.Meta):
        fields = (*PipelineSerializer.Meta.fields, "versions")


class WorkerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Worker
        fields = ("host", "version", "capacity", "busy", "started_at", "last_seen")


class PoolSerializer(serializers.ModelSerializer):
    class Meta:
        model = Pool
        fields = ("name", "target", "capacity", "queued_limit_s")
