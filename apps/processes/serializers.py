from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, cast

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from apps.datasets.config_fields import field_of
from apps.pipelines.selectors import QueuedTooLong
from apps.processes.input_limits import MAX_DEPTH, too_deep, too_deep_message
from apps.processes.models import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    STATE_CHOICES,
    Process,
    ProcessAttempt,
    ProcessEvent,
)
from apps.processes.run_options import resources_of, sbatch_of
from apps.processes.waiting import WaitingFor
from apps.webhooks.serializers import receiver_url

if TYPE_CHECKING:  # the stubs' alias: not installed with the server
    from django_stubs_ext import StrOrPromise


class StrictCharField(serializers.CharField):
    """A string, and only a string: ``{"pipeline": 7}`` is a wrong type, not "7"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A whole number, as a JSON number or (form-encoded) its digits: ``true`` or ``2.5`` is
    a wrong type, not 1 or 2."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or (isinstance(data, float) and not data.is_integer()):
            self.fail("invalid")
        return super().to_internal_value(data)


class ConfigField(serializers.Field):
    """A JSON object, given as JSON or (form-encoded, as seed 001 posts it) as a JSON string.
    Empty means "the pipeline's defaults"."""

    default_error_messages: ClassVar[dict[str, StrOrPromise]] = {
        "not_json": "Not valid JSON: {error}.",
        "not_object": "Must be a JSON object such as {{\"seconds\": 5}}, not {kind}.",
        "too_deep": "{field}: " + too_deep_message(),
    }

    def to_internal_value(self, data):
        if data in (None, ""):
            return {}
        if isinstance(data, str):
            data = self._parsed(data)
        if not isinstance(data, dict):
            self.fail("not_object", kind=type(data).__name__)
        return data

    def _parsed(self, text: str):
        """JSON ``text`` (a form field), refused before parsing when nested too deep."""
        if too_deep(text, MAX_DEPTH) is not None:
            self.fail("too_deep", field=self.field_name)
        try:  # NaN and Infinity are not JSON; digits past Python's limit are a ValueError
            return json.loads(text, parse_constant=_not_json)
        except RecursionError:
            self.fail("too_deep", field=self.field_name)
        except ValueError as exc:
            self.fail("not_json", error=exc)
    def to_representation(self, value):
        return value


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value")


class SecretsField(ConfigField):
    """Secret env values, ``{"API_TOKEN": "..."}``: write-only, as JSON or (form-encoded) as a
    JSON string. Names and values are checked against the pipeline in services."""

    default_error_messages: ClassVar[dict[str, StrOrPromise]] = {
        "not_object": "Must be a JSON object such as {{\"API_TOKEN\": \"...\"}}, not {kind}.",
    }


class ResourcesField(ConfigField):
    """``{"cpus": 2, "memory": "4G", "gpus": 1, "time_limit": "2h"}``, each optional, as JSON
    or (form-encoded) a JSON string; checked against the pool in services."""

    default_error_messages: ClassVar[dict[str, StrOrPromise]] = {
        "not_object": "Must be a JSON object such as {{\"cpus\": 2, \"memory\": \"4G\"}}, "
                      "not {kind}.",
    }


class EnvField(ConfigField):
    """Plain env values, ``{"SEED": "42"}``, as JSON or (form-encoded) a JSON string; names and
    values are checked against the pipeline in services."""

    default_error_messages: ClassVar[dict[str, StrOrPromise]] = {
        "not_object": "Must be a JSON object such as {{\"SEED\": \"42\"}}, not {kind}.",
    }


class SbatchField(ConfigField):
    """sbatch options, ``{"constraint": "a100", "mail_type": ["END"]}``, as JSON or
    (form-encoded) a JSON string; checked against the pipeline and the pool in services."""

    default_error_messages: ClassVar[dict[str, StrOrPromise]] = {
        "not_object": "Must be a JSON object such as {{\"constraint\": \"a100\"}}, not {kind}.",
    }


class ProcessCreateSerializer(serializers.Serializer):
    pipeline = StrictCharField(max_length=100)
    used_config = ConfigField(required=False, default=dict)
    version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    secrets = SecretsField(required=False, default=dict, write_only=True)
    team = StrictCharField(required=False, max_length=50, help_text=(
        "The slug of the team it is submitted for; needed when the caller submits for "
        "several teams."))
    priority = StrictIntegerField(
        required=False, default=0, min_value=PRIORITY_MIN, max_value=PRIORITY_MAX,
        help_text="Its place among its team's waiting processes on its pool: higher goes "
                  "first (-10..10, default 0). Other teams' turns follow the fair share.")
    resources = ResourcesField(required=False, default=dict, help_text=(
        "cpus, memory, gpus, time_limit, each optional, over the pipeline's own; within the "
        "pool's max_resources."))
    image = StrictCharField(required=False, default="", allow_blank=True, max_length=500,
                            help_text=(
        "The image to run, where the pipeline allows it: one of the pool's images."))
    env = EnvField(required=False, default=dict, help_text=(
        "Plain env values (strings) of names the pipeline allows; shown by the API, not "
        "secret."))
    sbatch = SbatchField(required=False, default=dict, help_text=(
        "Slurm pipelines: sbatch options (constraint, nodes, ntasks, cpus_per_task, gres, "
        "reservation, exclusive, mail_type, mail_user, chdir, export) the pipeline's "
        "allow.sbatch names, within the pool's allow_sbatch."))
    callback_url = serializers.URLField(
        required=False, max_length=2000, validators=[receiver_url],
        help_text="Told of the process's end: a signed JSON POST (see the webhooks routes); "
                  "the answer's `callback_secret` is the key of its signature.")

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(
                {name: [f"Unknown field; expected {', '.join(self.fields)}."]
                 for name in sorted(unknown)}
            )
        return attrs


class ProcessListSerializer(serializers.ListSerializer):
    """A page of processes: why each waiting one waits is worked out for the page at once."""

    def to_representation(self, data):
        processes = list(data.all() if hasattr(data, "all") else data)
        _waiting_for(self).prepare(processes)
        return super().to_representation(processes)


def _waiting_for(serializer: serializers.BaseSerializer) -> WaitingFor:
    """The response's one WaitingFor, shared through the context by every process's
    serializer."""
    rule = serializer.context.get("waiting_for")
    if rule is None:
        rule = WaitingFor()
        _shared(serializer)["waiting_for"] = rule
    return rule


class ProcessSerializer(serializers.ModelSerializer):
    pipeline = serializers.CharField(source="pipeline.name")
    pipeline_version = serializers.IntegerField(source="pipeline_version.number")
    owner = serializers.CharField(source="owner.username", default=None)
    team = serializers.CharField(source="team.slug", default=None)
    waiting_too_long = serializers.SerializerMethodField()
    waiting_for = serializers.SerializerMethodField()
    urls = serializers.SerializerMethodField()

    class Meta:
        model = Process
        list_serializer_class = ProcessListSerializer
        fields: tuple[str, ...] = (
            "id", "pipeline", "pipeline_version", "state", "used_config", "resources", "image",
            "env", "sbatch", "gpu_devices", "owner", "team", "pool", "target", "handle", "host",
            "exit_code", "message", "log_size", "priority",
            "created_at", "admitted_at", "queued_at", "submitted_at", "started_at",
            "finished_at", "updated_at", "waiting_too_long", "waiting_for", "urls",
            "attempt",
        )

    def get_waiting_too_long(self, process) -> bool:
        """QUEUED for longer than its pool's ``queued_limit``: it waits, it is not failed."""
        rule = self.context.get("queued_too_long")
        if rule is None:  # at most one query per response, shared by every process of a page
            rule = QueuedTooLong(self.context.get("queued_limits"))
            _shared(self)["queued_too_long"] = rule
        return rule(process)

    def get_waiting_for(self, process) -> str | None:
        """Why it waits for admission ("pool local at capacity 4/4", "pool local paused",
        "team quota 10/10 running on local", ...); null once admitted."""
        return _waiting_for(self)(process)

    def get_urls(self, process):
        base = self.context.get("processes_url")
        if base is None:  # one reverse per response: the router's URLs of one process
            base = reverse("process-list", request=self.context.get("request"))
            _shared(self)["processes_url"] = base
        detail = f"{base}{process.pk}/"
        return {"detail": detail, **{name: f"{detail}{name}/" for name in ACTIONS}}

    def to_representation(self, process):
        """The fields of Meta.fields, written out: a page of 50 processes is this serializer's
        hot path, and DRF's field machinery cost more than the query behind the page."""
        return {
            "id": str(process.pk),
            "pipeline": process.pipeline.name,
            "pipeline_version": process.pipeline_version.number,
            "state": process.state,
            "used_config": process.used_config,
            "resources": resources_of(process.pipeline_version, process.resources),
            "image": process.image or process.pipeline_version.run.get("image", ""),
            "env": process.env,
            "sbatch": sbatch_of(process.pipeline_version, process.sbatch),
            "gpu_devices": process.gpu_devices,
            "owner": process.owner.username if process.owner_id else None,
            "team": process.team.slug if process.team_id else None,
            "pool": process.pool,
            "target": process.target,
            "handle": process.handle,
            "host": process.host,
            "exit_code": process.exit_code,
            "message": process.message,
            "log_size": process.log_size,
            "priority": process.priority,
            "created_at": _when(process.created_at),
            "admitted_at": _when(process.admitted_at),
            "queued_at": _when(process.queued_at),
            "submitted_at": _when(process.submitted_at),
            "started_at": _when(process.started_at),
            "finished_at": _when(process.finished_at),
            "updated_at": _when(process.updated_at),
            "waiting_too_long": self.get_waiting_too_long(process),
            "waiting_for": self.get_waiting_for(process),
            "urls": self.get_urls(process),
            "attempt": process.attempt,
        }


class ProcessDatasetSerializer(serializers.Serializer):
    """A dataset a process names in its config, and where."""

    id = serializers.UUIDField(source="dataset.pk")
    name = serializers.CharField(source="dataset.name")
    size = serializers.IntegerField(source="dataset.size")
    sha256 = serializers.CharField(source="dataset.sha256")
    field = serializers.SerializerMethodField(
        help_text="The config field that names it, as errors name it: used_config.files.1")
    pointer = serializers.CharField(help_text="The same place as a JSON pointer: /files/1")

    def get_field(self, use) -> str:
        return field_of(use.pointer)


class ProcessOutputSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Relative to the job's output dir, /-separated.")
    size = serializers.IntegerField(help_text="Its size in bytes.")
    sha256 = serializers.CharField(help_text="The SHA-256 of its bytes, in hex.")


def _shared(serializer: serializers.BaseSerializer) -> dict[str, Any]:
    """The context of ``serializer``: the dict its view passed, the root serializer's and so
    one per response, shared by the serializer of every process of a page. Typed a Mapping by
    the stubs, it is that dict, so what a serializer caches there the next one finds."""
    return cast(dict[str, Any], serializer.context)


# The actions of a process, as the router names them under its detail URL.
ACTIONS = ("status", "stop", "events", "logs", "outputs")
_DATETIME = serializers.DateTimeField()


def _when(value):
    """A timestamp exactly as DRF's DateTimeField writes it (None stays None)."""
    return None if value is None else _DATETIME.to_representation(value)


class ProcessAttemptSerializer(serializers.ModelSerializer):
    """One job on the target for a process: the first, and one per retry."""

    class Meta:
        model = ProcessAttempt
        fields = ("number", "state", "handle", "host", "exit_code", "message", "reason",
                  "created_at", "submitted_at", "started_at", "ended_at")


class ProcessDetailSerializer(ProcessSerializer):
    """One process (GET /api/processes/<id>/) with its ``attempts``, oldest first, and the
    ``datasets`` its config names (a page of processes leaves both out: more queries per
    process)."""

    attempts = ProcessAttemptSerializer(many=True, read_only=True)
    datasets = serializers.SerializerMethodField()

    class Meta(ProcessSerializer.Meta):
        fields: tuple[str, ...] = (
            *ProcessSerializer.Meta.fields, "attempts", "datasets")

    @extend_schema_field(ProcessDatasetSerializer(many=True))
    def get_datasets(self, process):
        created = process.rows_created  # a process just created: its uses are at hand
        uses = created.dataset_uses if created else (
            process.dataset_uses.select_related("dataset").order_by("pk"))
        return ProcessDatasetSerializer(uses, many=True).data

    def to_representation(self, process):
        body = super().to_representation(process)
        created = process.rows_created
        attempts = created.attempts if created else process.attempts.all()
        body["attempts"] = ProcessAttemptSerializer(attempts, many=True).data
        body["datasets"] = self.get_datasets(process)
        return body


class ProcessStatusSerializer(serializers.ModelSerializer):
    finished = serializers.SerializerMethodField()

    class Meta:
        model = Process
        fields = ("id", "state", "finished", "exit_code", "message", "updated_at")

    def get_finished(self, process) -> bool:
        return process.finished_at is not None


class ProcessEventSerializer(serializers.Serializer):
    """One transition as the API announces it: ``from`` (null for the first), ``to``, ``time``
    (when it happened), ``recorded_at`` (when the control plane applied it), ``source``,
    ``detail``. Declared in get_fields: ``from`` is a Python keyword."""

    def get_fields(self):
        return {
            "from": serializers.ChoiceField(choices=STATE_CHOICES, source="from_state",
                                            allow_null=True),
            "to": serializers.ChoiceField(choices=STATE_CHOICES, source="to_state"),
            "time": serializers.DateTimeField(source="at"),
            "recorded_at": serializers.DateTimeField(),
            "source": serializers.CharField(),
            "detail": serializers.CharField(),
            "attempt": serializers.IntegerField(),
        }

    def to_representation(self, event: ProcessEvent):
        body = super().to_representation(event)
        body["from"] = body["from"] or None  # no state before the first: null, not ""
        return body
