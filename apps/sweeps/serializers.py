from __future__ import annotations

from typing import ClassVar

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from apps.processes.models import PRIORITY_MAX, PRIORITY_MIN
from apps.processes.serializers import (
    ConfigField,
    EnvField,
    ResourcesField,
    StrictCharField,
    StrictIntegerField,
)
from apps.sweeps.models import Sweep
from apps.sweeps.selectors import sweep_counts
from workers.contract import State


class ConfigListField(serializers.ListField):
    """A list of configs, each a JSON object; a refused one is named by its index
    (``configs[3]: ...``), as every error names its field."""

    child = ConfigField()

    def run_child_validation(self, data):
        result, errors = [], []
        for index, item in enumerate(data):
            try:
                result.append(self.child.run_validation(item))
            except serializers.ValidationError as exc:
                details = exc.detail if isinstance(exc.detail, list) else [exc.detail]
                errors += [f"configs[{index}]: {detail}" for detail in details]
        if errors:
            raise serializers.ValidationError(errors)
        return result


@extend_schema_field({"type": "object", "minProperties": 1,
                      "additionalProperties": {"type": "array", "items": {}, "minItems": 1},
                      "example": {"lr": [0.1, 0.01], "seed": [1, 2, 3]}})
class GridField(ConfigField):
    """Parameter -> the values it takes; each a top-level key of the config. A JSON object,
    never a string of one: a grid comes in a JSON body."""

    default_error_messages: ClassVar[dict] = {
        "not_object": "Must be a JSON object such as {{\"lr\": [0.1, 0.01]}}, not {kind}.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_object", kind=type(data).__name__)
        return data


class SweepCreateSerializer(serializers.Serializer):
    pipeline = StrictCharField(max_length=100)
    version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    team = StrictCharField(required=False, max_length=50, help_text=(
        "The slug of the team it is submitted for; needed when the caller submits for "
        "several teams."))
    base_config = ConfigField(required=False, default=dict, help_text=(
        "What every run's config starts from, over the pipeline's defaults."))
    configs = ConfigListField(required=False, min_length=1, help_text=(
        "One run per config, each merged over base_config. Give this or grid."))
    grid = GridField(required=False, help_text=(
        "One run per combination of the values, the last parameter varying fastest: "
        "{\"lr\": [0.1, 0.01], \"seed\": [1, 2, 3]} is 6 runs. Give this or configs."))
    priority = StrictIntegerField(required=False, default=0, min_value=PRIORITY_MIN,
                                  max_value=PRIORITY_MAX, help_text=(
        "Every run's place among its team's waiting processes on its pool (-10..10)."))
    resources = ResourcesField(required=False, default=dict, help_text=(
        "cpus, memory, gpus, time_limit of every run, each optional, over the pipeline's."))
    image = StrictCharField(required=False, default="", allow_blank=True, max_length=500,
                            help_text="The image of every run, where the pipeline allows it.")
    env = EnvField(required=False, default=dict, help_text=(
        "Plain env values of every run, of names the pipeline allows."))

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(
                {name: [f"Unknown field; expected {', '.join(self.fields)}."]
                 for name in sorted(unknown)})
        if ("configs" in attrs) == ("grid" in attrs):
            raise serializers.ValidationError({"configs": [
                "Give either configs (a list of configs) or grid (a mapping of parameter to "
                "values), not both and not neither."]})
        return attrs


class StateCountsSerializer(serializers.Serializer):
    """How many of the sweep's processes are in each state."""

    def get_fields(self):
        return {state.value: serializers.IntegerField() for state in State}


class SweepSerializer(serializers.ModelSerializer):
    pipeline = serializers.CharField(source="pipeline.name")
    pipeline_version = serializers.IntegerField(source="pipeline_version.number")
    owner = serializers.CharField(source="owner.username", default=None, allow_null=True)
    team = serializers.CharField(source="team.slug", default=None, allow_null=True)
    counts = serializers.SerializerMethodField()
    urls = serializers.SerializerMethodField()

    class Meta:
        model = Sweep
        fields = ("id", "pipeline", "pipeline_version", "team", "owner", "base_config", "grid",
                  "size", "created_at", "counts", "urls")

    @extend_schema_field(StateCountsSerializer)
    def get_counts(self, sweep) -> dict:
        """Its processes by state (given by the view: one query for a page of sweeps)."""
        counts = self.context.get("counts", {})
        return counts[sweep.pk] if sweep.pk in counts else sweep_counts([sweep])[sweep.pk]

    @extend_schema_field({"type": "object", "properties": {
        "detail": {"type": "string"}, "processes": {"type": "string"},
        "stop": {"type": "string"}}})
    def get_urls(self, sweep) -> dict:
        detail = reverse("sweep-detail", args=[sweep.pk], request=self.context.get("request"))
        return {"detail": detail, "processes": f"{detail}processes/", "stop": f"{detail}stop/"}


class SweepStopSerializer(serializers.Serializer):
    stopped = serializers.IntegerField(help_text="How many processes this request stopped or "
                                                 "asked to stop.")
    counts = StateCountsSerializer()
