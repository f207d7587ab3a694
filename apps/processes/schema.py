"""The OpenAPI description of the processes API where the serializers alone do not tell it:
fields that take JSON as an object or a string, the answers built as plain dicts (logs,
health), and the Idempotency-Key header."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers

from apps.processes.input_limits import IDEMPOTENCY_KEY_MAX_CHARS
from apps.processes.models import STATE_CHOICES
from apps.processes.serializers import ProcessSerializer
from workers.sbatch_options import MAIL_TYPES


def object_or_json_string(schema: dict, description: str) -> dict:
    """A field that takes a JSON object, or (form-encoded) the same object as a JSON string."""
    return {
        "oneOf": [schema, {"type": "string", "description": "The object as a JSON string "
                                                           "(form-encoded requests)."}],
        "description": description,
    }


class ConfigFieldSchema(OpenApiSerializerFieldExtension):
    """``used_config``: a JSON object, or (form-encoded) the same object as a JSON string."""

    target_class = "apps.processes.serializers.ConfigField"

    def map_serializer_field(self, auto_schema, direction):
        return object_or_json_string(
            {"type": "object", "additionalProperties": True},
            "The pipeline's config: merged over its defaults, then checked "
            "against its config_schema. Empty means the defaults.")


class SecretsFieldSchema(OpenApiSerializerFieldExtension):
    """``secrets``: names the pipeline declares, with string values; never answered back."""

    target_class = "apps.processes.serializers.SecretsField"

    def map_serializer_field(self, auto_schema, direction):
        return object_or_json_string(
            {"type": "object", "additionalProperties": {"type": "string"}},
            "Secret environment values the pipeline declares "
            "(`{\"API_TOKEN\": \"...\"}`): stored encrypted, never returned.")


class ResourcesFieldSchema(OpenApiSerializerFieldExtension):
    """``resources``: what a run asks, each optional, within its pool's max_resources."""

    target_class = "apps.processes.serializers.ResourcesField"

    def map_serializer_field(self, auto_schema, direction):
        amount = {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]}
        return object_or_json_string(
            {"type": "object", "additionalProperties": False, "properties": {
                "cpus": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                "memory": {**amount, "description": "MB, or 512M, 4G"},
                "gpus": {"type": "integer", "minimum": 0},
                "time_limit": {**amount, "description": "seconds, or 30m, 2h"}}},
            "Resources the run asks over its pipeline's own; each at most its "
            "pool's max_resources (a resource the pool sets no maximum for: at "
            "most the pipeline's).")


class EnvFieldSchema(OpenApiSerializerFieldExtension):
    """``env``: plain env values of names the pipeline allows."""

    target_class = "apps.processes.serializers.EnvField"

    def map_serializer_field(self, auto_schema, direction):
        return object_or_json_string(
            {"type": "object", "additionalProperties": {"type": "string"}},
            "Plain environment values (`{\"SEED\": \"42\"}`) of names the "
            "pipeline's allow.env lets a run set; shown by the API (use secrets "
            "for what must stay secret).")


class SbatchFieldSchema(OpenApiSerializerFieldExtension):
    """``sbatch``: sbatch options of a Slurm run (workers.sbatch_options)."""

    target_class = "apps.processes.serializers.SbatchField"

    def map_serializer_field(self, auto_schema, direction):
        count = {"type": "integer", "minimum": 1}
        mail_types = {"type": "string", "enum": list(MAIL_TYPES)}
        return object_or_json_string(
            {"type": "object", "additionalProperties": False, "properties": {
                "constraint": {"type": "string", "description": "a100, a100&ib, [v100|a100]"},
                "nodes": {"oneOf": [count, {"type": "string", "description": "MIN-MAX"}]},
                "ntasks": count,
                "cpus_per_task": count,
                "gres": {"type": "string", "description": "name[:type]:count, comma-separated"},
                "reservation": {"type": "string"},
                "exclusive": {"oneOf": [{"type": "boolean"},
                                        {"type": "string", "enum": ["user", "mcs"]}]},
                "mail_type": {"oneOf": [{"type": "array", "items": mail_types},
                                        {"type": "string", "description": "END,FAIL"}]},
                "mail_user": {"type": "string"},
                "chdir": {"type": "string", "description": "an absolute path"},
                "export": {"type": "array", "items": {
                    "type": "string", "description": "NAME=VALUE, or NAME"}}}},
            "Slurm pipelines: sbatch options its pipeline's allow.sbatch names, each "
            "within its pool's allow_sbatch; the job gets them over its pipeline's and "
            "its pool's.")


# ProcessSerializer.get_urls has no type hint to read: an object of URLs, by action name.
extend_schema_field({
    "type": "object",
    "additionalProperties": {"type": "string", "format": "uri"},
    "description": "This process's URLs: `detail` and one per action.",
})(ProcessSerializer.get_urls)


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX_CHARS, "pattern": "^[ -~]*$"},
    OpenApiParameter.HEADER, required=False,
    description="The same request with the same key returns the first process (with "
                "`Idempotent-Replayed: true`) instead of starting another; the same key with "
                "another request is a 422 naming `Idempotency-Key`. Printable ASCII, at most "
                f"{IDEMPOTENCY_KEY_MAX_CHARS} characters.",
)


class LogChunkSerializer(serializers.Serializer):
    """GET /api/processes/<id>/logs/: the kept output from ``offset`` on."""

    offset = serializers.IntegerField(help_text="The byte this text starts at.")
    next_offset = serializers.IntegerField(help_text="The offset to ask for next.")
    size = serializers.IntegerField(help_text="Bytes of output the process wrote so far.")
    skipped = serializers.IntegerField(
        help_text="Bytes dropped by the log cap between offset and text.")
    truncated = serializers.BooleanField(help_text="The log cap dropped some of the output.")
    complete = serializers.BooleanField(
        help_text="The process has finished and this text reaches the end of its output.")
    text = serializers.CharField()


class HealthPartSerializer(serializers.Serializer):
    ok = serializers.BooleanField(allow_null=True, help_text="null: unknown (no database).")
    detail = serializers.CharField(required=False)
    last_seen = serializers.DateTimeField(required=False, allow_null=True)


class HealthClusterSerializer(serializers.Serializer):
    """A Slurm pool's cluster as its freshest worker saw it."""

    reachable = serializers.BooleanField()
    rest_api_version = serializers.CharField(allow_null=True,
                                             help_text="slurmrestd's API version in use.")
    detail = serializers.CharField()


class HealthPoolSerializer(serializers.Serializer):
    """A pool with live workers: how many, and their slots."""

    workers = serializers.IntegerField(help_text="Workers heard from lately.")
    capacity = serializers.IntegerField(help_text="Their slots, all together.")
    busy = serializers.IntegerField(help_text="Slots busy now.")
    cluster = HealthClusterSerializer(required=False, help_text="Slurm pools only.")


class HealthRefusedSerializer(serializers.Serializer):
    """Messages refused for one reason (staff only): forged, unsigned, from another pool."""

    count = serializers.IntegerField()
    last_seen = serializers.DateTimeField()
    last_detail = serializers.CharField(help_text="What the last one claimed (not trusted).")


class HealthSerializer(serializers.Serializer):
    """GET /api/health/: each part of the control plane, and the pools with live workers."""

    status = serializers.ChoiceField(["ok", "unavailable"])
    database = HealthPartSerializer(required=False)
    broker = HealthPartSerializer(required=False)
    control = HealthPartSerializer(required=False, help_text="The control consumer.")
    beat = HealthPartSerializer(required=False)
    down = serializers.ListField(child=serializers.CharField(),
                                 help_text="The parts that are down.")
    pools = serializers.DictField(child=HealthPoolSerializer(), required=False,
                                  help_text="Pools with live workers, by name.")
    pools_down = serializers.ListField(child=serializers.CharField(), required=False,
                                       help_text="Defined pools with no live worker, or whose "
                                                 "workers cannot use their Slurm cluster.")
    refused = serializers.DictField(
        child=HealthRefusedSerializer(), required=False,
        help_text="Staff only: messages and events on the control queue that were not "
                  "believed (unsigned, forged, from a worker that does not hold the process), "
                  "by reason.")


def _query(name: str, kind, description: str, **kwargs) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description, **kwargs)


# The list's query parameters, described (they replace the ones drf-spectacular derives).
PROCESS_FILTERS = [
    _query("state", OpenApiTypes.STR,
           "Only processes in these states (repeat the parameter for several).",
           many=True, enum=[value for value, _ in STATE_CHOICES], explode=True, style="form"),
    _query("pipeline", OpenApiTypes.STR, "Only runs of the pipeline of this name."),
    _query("created_after", OpenApiTypes.DATETIME, "Created at or after this time (ISO 8601)."),
    _query("created_before", OpenApiTypes.DATETIME, "Created before this time (ISO 8601)."),
    _query("finished_after", OpenApiTypes.DATETIME,
           "Finished at or after this time (ISO 8601)."),
    # ProcessPagination's, with the bounds it enforces (outside them: a 400 naming it).
    _query("page", {"type": "integer", "minimum": 1}, "The page number, from 1."),
    _query("page_size", {"type": "integer", "minimum": 1, "maximum": 500},
           "Processes per page (default 50)."),
]
