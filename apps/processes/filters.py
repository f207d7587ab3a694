import re
import uuid
from datetime import UTC

import django_filters as filters
from django import forms
from django.core.exceptions import ValidationError
from django_filters.fields import ChoiceField, IsoDateTimeField
from drf_spectacular.utils import extend_schema_field

from apps.processes.models import STATE_CHOICES, Process


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, moved to UTC: PostgreSQL refuses offsets past 15:59 (a 500), and a
    time that leaves the calendar in UTC (year 1 at +01:00) is a 400 like any bad time, as is
    an empty value."""

    def to_python(self, value):
        if value == "":  # given but empty: not "any time"
            raise ValidationError("Enter a date and time (ISO 8601), or leave it out.",
                                  code="required")
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


ID_PREFIX_MIN_DIGITS = 4
_HEX = re.compile(r"[0-9a-f-]+")


class IdPrefixField(forms.CharField):
    """The first hex digits of a process id, with or without its dashes, as the (lowest,
    highest) ids that start with them."""

    def to_python(self, value):
        if value == "":  # given but empty: a 400, as every filter's (left out: no filter)
            raise ValidationError(f"Give at least {ID_PREFIX_MIN_DIGITS} hex digits of a process "
                                  "id, or leave id_prefix out.", code="invalid")
        value = (super().to_python(value) or "").strip().lower()
        if not value:
            return None
        digits = value.replace("-", "")
        lowest = digits.ljust(32, "0")
        # Dashes, if any, where a uuid has them: "1a2b-3c" is no prefix of any id.
        if (not _HEX.fullmatch(value) or not ID_PREFIX_MIN_DIGITS <= len(digits) <= 32
                or ("-" in value and not str(uuid.UUID(lowest)).startswith(value))):
            raise ValidationError(
                f"Give at least {ID_PREFIX_MIN_DIGITS} hex digits of a process id (dashes "
                "where the id has them), not %(value)r.", code="invalid",
                params={"value": value[:40]})
        return uuid.UUID(lowest), uuid.UUID(digits.ljust(32, "f"))


@extend_schema_field({"type": "string", "minLength": ID_PREFIX_MIN_DIGITS, "maxLength": 36,
                      "pattern": "^[0-9a-fA-F-]+$",
                      "description": "Only processes whose id starts with these hex digits "
                                     "(at least 4; dashes as in the id, or none)."})
class IdPrefixFilter(filters.Filter):
    """``?id_prefix=1a2b3c``: the processes whose id starts with these digits, found as a
    range of the uuid column, which its primary-key index serves (a cast of the column to
    text would read every row)."""

    field_class = IdPrefixField

    def filter(self, qs, value):
        if value is None:
            return qs
        lowest, highest = value
        return qs.filter(pk__gte=lowest, pk__lte=highest)


class GivenUUIDField(forms.UUIDField):
    """A uuid; given but empty is a 400 (left out: no filter)."""

    def to_python(self, value):
        if value == "":
            raise forms.ValidationError("A process id (a uuid), or leave it out.",
                                        code="invalid")
        return super().to_python(value)


class GivenUUIDFilter(filters.UUIDFilter):
    field_class = GivenUUIDField


class GivenChoiceField(ChoiceField):
    """One of the choices; given but empty is a 400 (left out: no filter)."""

    def to_python(self, value):
        if value == "":
            raise forms.ValidationError("One of the listed values, or leave it out.",
                                        code="invalid")
        return super().to_python(value)


class GivenChoiceFilter(filters.ChoiceFilter):
    field_class = GivenChoiceField


class GivenNumberField(forms.DecimalField):
    """A number; given but empty is a 400 (left out: no filter)."""

    def to_python(self, value):
        if value == "":
            raise forms.ValidationError("A number, or leave it out.", code="invalid")
        return super().to_python(value)


class GivenNumberFilter(filters.NumberFilter):
    field_class = GivenNumberField


class ProcessFilter(filters.FilterSet):
    """``?state=RUNNING&state=QUEUED&pipeline=hello&created_after=2026-11-25T10:00:00Z``,
    ``?id_prefix=1a2b3c`` (the ``orch`` command's ids by prefix)."""

    # distinct=False: a process has one state, and DISTINCT over a million rows costs ~250 ms.
    state = filters.MultipleChoiceFilter(choices=STATE_CHOICES, distinct=False)
    pipeline = filters.CharFilter(field_name="pipeline__name")
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    finished_after = UtcIsoDateTimeFilter(field_name="finished_at", lookup_expr="gte")
    id_prefix = IdPrefixFilter()

    class Meta:
        model = Process
        fields = ("state", "pipeline", "created_after", "created_before", "finished_after",
                  "id_prefix")
