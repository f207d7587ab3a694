from __future__ import annotations

from rest_framework import serializers

from apps.audit.models import Action, AuditEntry

_AT = serializers.DateTimeField()


class AuditEntrySerializer(serializers.Serializer):
    """One thing done: who, in which team, what, to what, when, from which address."""

    at = serializers.DateTimeField(help_text="When it was done.")
    actor = serializers.CharField(
        help_text="Who did it: `client:NAME`, `user:NAME` or `system` (a command, the beat).")
    team = serializers.CharField(
        allow_null=True, help_text="The team's slug (kept when the team is deleted); null for "
                                   "an action in no team.")
    action = serializers.ChoiceField(choices=Action.choices)
    target = serializers.CharField(
        help_text="What it was done to: `process <id>`, `client <client_id>`, "
                  "`member <username>`.")
    detail = serializers.DictField(
        help_text="More about it: a role change's `from` and `to`, a submit's pipeline and "
                  "version...")
    remote_addr = serializers.IPAddressField(
        allow_null=True, help_text="The address the request came from; null for the system.")

    def to_representation(self, entry: AuditEntry) -> dict:
        return {
            "at": _AT.to_representation(entry.at),
            "actor": entry.actor,
            "team": entry.team_slug or None,
            "action": entry.action,
            "target": entry.target,
            "detail": entry.detail,
            "remote_addr": entry.remote_addr,
        }
