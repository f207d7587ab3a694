from __future__ import annotations

import unicodedata

from rest_framework import serializers

from apps.datasets.models import Dataset
from apps.datasets.uploads import FORM_FIELDS, unknown_field

NAME_MAX = 255
DESCRIPTION_MAX = 10_000


CONTROL_CHARACTERS = "Must not contain control characters (a newline, a tab, ...)."


def _has_control_characters(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)


def _printable(value: str) -> None:
    """A name is also the download's file name (a header): no control character."""
    if _has_control_characters(value):
        raise serializers.ValidationError(CONTROL_CHARACTERS)


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        allow_empty_file=True, use_url=False,
        help_text="The file's bytes (multipart/form-data), at most ORCH_DATASET_MAX_BYTES.")
    name = serializers.CharField(
        required=False, max_length=NAME_MAX, validators=[_printable],
        help_text="The dataset's name (default: the file's name); its download's file name.")
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=DESCRIPTION_MAX,
        help_text="What it holds, for people.")
    team = serializers.CharField(
        required=False, max_length=50, help_text=(
            "The slug of the team it is uploaded for; needed when the caller uploads for "
            "several teams."))

    def validate(self, attrs):
        for name in sorted(set(self.initial_data) - set(FORM_FIELDS)):
            raise unknown_field(name)
        for name in ("name", "team"):  # a form's empty field would read as left out
            if self.initial_data.get(name) == "":
                raise serializers.ValidationError({name: [
                    "May not be blank: give a value, or leave the field out."]})
        if "name" not in attrs:  # the file's own name, as the parser cleaned it (no path)
            attrs["name"] = _printable_or_refused(attrs["file"].name)
        return attrs


def _printable_or_refused(name: str) -> str:
    if _has_control_characters(name):
        raise serializers.ValidationError({"file": [
            f"The file's name is no dataset name: {CONTROL_CHARACTERS} Give one in name."]})
    return name


class DatasetSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", default=None,
                                  help_text="Who uploaded it (a client's user: client-NAME).")
    team = serializers.CharField(source="team.slug", default=None,
                                 help_text="The slug of the team it belongs to.")
    sha256 = serializers.CharField(help_text="The SHA-256 of its bytes, in hex.")
    size = serializers.IntegerField(help_text="Its size in bytes.")

    class Meta:
        model = Dataset
        fields = ("id", "name", "size", "sha256", "created_at", "owner", "team", "description")


class FromOutputSerializer(serializers.Serializer):
    process = serializers.UUIDField(help_text="The process's id.")
    path = serializers.CharField(help_text="The output's path, as GET .../outputs/ lists it.")


class FromOutputRequestSerializer(serializers.Serializer):
    """The schema of a JSON POST /api/datasets/ (apps.datasets.from_output checks it)."""

    from_output = FromOutputSerializer()
    name = serializers.CharField(required=False, max_length=NAME_MAX,
                                 help_text="The dataset's name (default: the file's name).")
    description = serializers.CharField(required=False, allow_blank=True,
                                        max_length=DESCRIPTION_MAX)
