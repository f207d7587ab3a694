from __future__ import annotations

from typing import ClassVar

from rest_framework import serializers

from apps.processes.serializers import StrictCharField
from apps.teams.roles import Role
from apps.teams.services import CLIENT_NAME_MAX

ROLE_NAMES = ", ".join(Role.values)


class TeamSerializer(serializers.Serializer):
    """A team in a list: its slug, name and the caller's role in it (null for a superuser
    who is not a member)."""

    slug = serializers.SlugField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices, allow_null=True)
    created_at = serializers.DateTimeField()

    def to_representation(self, instance):
        return {"slug": instance.slug, "name": instance.name,
                "role": self.context.get("roles", {}).get(instance.pk),
                "created_at": _CREATED_AT.to_representation(instance.created_at)}


_CREATED_AT = serializers.DateTimeField()


class TeamMemberSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)

    def to_representation(self, instance):
        if isinstance(instance, dict):  # a row of team_detail
            return instance
        return {"username": instance.user.get_username(), "role": instance.role}


class TeamClientSerializer(serializers.Serializer):
    name = serializers.CharField()
    client_id = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)

    def to_representation(self, instance):
        if isinstance(instance, dict):  # a row of team_detail
            return instance
        return {"name": instance.application.name,
                "client_id": instance.application.client_id, "role": instance.role}


class TeamDetailSerializer(TeamSerializer):
    """A team with who is in it: its members (browser users) and clients (OAuth2)."""

    members = TeamMemberSerializer(many=True)
    clients = TeamClientSerializer(many=True)

    def to_representation(self, instance):
        return {**super().to_representation(instance), **self.context["detail"]}


# --- what a team admin sends --------------------------------------------------------------------


class RoleField(serializers.ChoiceField):
    """A role by its name: anything else (another string, a number, a list) is refused with
    the names of the roles."""

    default_error_messages: ClassVar[dict] = {
        "invalid_choice": f"Not a role: {{input}}; a role is one of {ROLE_NAMES}."}

    def __init__(self, **kwargs):
        super().__init__(choices=Role.choices, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str) and data in Role.values:
            return data
        self.fail("invalid_choice", input=repr(data)[:60])


class KnownFieldsSerializer(serializers.Serializer):
    """A body with these fields and no other: an unknown one is refused by name, listing the
    expected ones (a misspelt ``rolle`` would otherwise be quietly dropped)."""

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            expected = ", ".join(self.fields)
            raise serializers.ValidationError(
                {name: [f"Unknown field; expected {expected}."] for name in sorted(unknown)})
        return attrs


class TeamClientCreateSerializer(KnownFieldsSerializer):
    name = StrictCharField(max_length=CLIENT_NAME_MAX, help_text=(
        "The new client's name, unique among clients: letters, digits and @ . + - _."))
    role = RoleField(default=Role.OPERATOR, help_text="Its role in the team (default operator).")


class TeamClientCreatedSerializer(serializers.Serializer):
    """A client just made: its secret is shown here and never again."""

    name = serializers.CharField()
    client_id = serializers.CharField()
    client_secret = serializers.CharField(
        help_text="Shown only in this answer (the server keeps its hash): keep it now.")
    role = serializers.ChoiceField(choices=Role.choices)
    team = serializers.SlugField(help_text="The team's slug.")


class TeamMemberAddSerializer(KnownFieldsSerializer):
    username = StrictCharField(max_length=150, help_text="An existing, active user.")
    role = RoleField(default=Role.VIEWER, help_text="Their role in the team (default viewer).")


class RoleChangeSerializer(KnownFieldsSerializer):
    role = RoleField(help_text=f"The new role: {ROLE_NAMES}.")
