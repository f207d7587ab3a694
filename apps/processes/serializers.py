from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rest_framework import serializers
from rest_framework.reverse import reverse

from apps.pipelines.selectors import QueuedTooLong
from apps.processes.input_limits import MAX_DEPTH, too_deep, too_deep_message
from apps.processes.models import STATE_CHOICES, Process, ProcessEvent

if TYPE_CHECKING:  # the stubs' alias: not installed with the server
    from django_stubs_ext import StrOrPromise


class StrictCharField(serializers.CharField):
    """A string, and only a string: ``{"pipeline": 7}`` is a wrong type, not "7"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
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


class ProcessCreateSerializer(serializers.Serializer):
    pipeline = StrictCharField(max_length=100)
    used_config = ConfigField(required=False, default=dict)
    version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    secrets = SecretsField(required=False, default=dict, write_only=True)

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(
                {name: ["Unknown field; expected pipeline, used_config, version, secrets."]
                 for name in sorted(unknown)}
            )
        return attrs


class ProcessSerializer(serializers.ModelSerializer):
    pipeline = serializers.CharField(source="pipeline.name")
    pipeline_version = serializers.IntegerField(source="pipeline_version.number")
    owner = serializers.CharField(source="owner.username", default=None)
    waiting_too_long = serializers.SerializerMethodField()
    urls = serializers.SerializerMethodField()

    class Meta:
        model = Process
        fields = (
            "id", "pipeline", "pipeline_version", "state", "used_config", "owner", "pool",
            "target", "handle", "host", "exit_code", "message", "log_size", "created_at",
            "queued_at", "submitted_at", "started_at", "finished_at", "updated_at",
            "waiting_too_long", "urls",
        )

    def get_waiting_too_long(self, process) -> bool:
        """QUEUED for longer than its pool's ``queued_limit``: it waits, it is not failed."""
        rule = self.context.get("queued_too_long")
        if rule is None:  # at most one query per response, shared by every process of a page
            rule = QueuedTooLong(self.context.get("queued_limits"))
            _shared(self)["queued_too_long"] = rule
        return rule(process)

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
            "owner": process.owner.username if process.owner_id else None,
            "pool": process.pool,
            "target": process.target,
            "handle": process.handle,
            "host": process.host,
            "exit_code": process.exit_code,
            "message": process.message,
            "log_size": process.log_size,
            "created_at": _when(process.created_at),
            "queued_at": _when(process.queued_at),
            "submitted_at": _when(process.submitted_at),
            "started_at": _when(process.started_at),
            "finished_at": _when(process.finished_at),
            "updated_at": _when(process.updated_at),
            "waiting_too_long": self.get_waiting_too_long(process),
            "urls": self.get_urls(process),
        }


def _shared(serializer: serializers.BaseSerializer) -> dict[str, Any]:
    """The context of ``serializer``: the dict its view passed, the root serializer's and so
    one per response, shared by the serializer of every process of a page. Typed a Mapping by
    the stubs, it is that dict, so what a serializer caches there the next one finds."""
    return cast(dict[str, Any], serializer.context)


# The actions of a process, as the router names them under its detail URL.
ACTIONS = ("status", "stop", "events", "logs")
_DATETIME = serializers.DateTimeField()


def _when(value):
    """A timestamp exactly as DRF's DateTimeField writes it (None stays None)."""
    return None if value is None else _DATETIME.to_representation(value)


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
        }

    def to_representation(self, event: ProcessEvent):
        body = super().to_representation(event)
        body["from"] = body["from"] or None  # no state before the first: null, not ""
        return body
