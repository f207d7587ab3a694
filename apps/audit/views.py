from __future__ import annotations

import django_filters as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets

from apps.accounts.schema import errors
from apps.audit.models import Action, AuditEntry
from apps.audit.selectors import audit_list
from apps.audit.serializers import AuditEntrySerializer
from apps.processes.filters import GivenChoiceFilter, UtcIsoDateTimeFilter
from apps.teams.access import Caller


class AuditFilter(filters.FilterSet):
    """``?team=lab&action=role-change&since=2026-12-01T00:00:00Z``"""

    team = filters.CharFilter(field_name="team_slug")
    action = GivenChoiceFilter(choices=Action.choices)
    since = UtcIsoDateTimeFilter(field_name="at", lookup_expr="gte")

    class Meta:
        model = AuditEntry
        fields = ("team", "action", "since")


def _query(name: str, kind, description: str, **kwargs) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description, **kwargs)


AUDIT_FILTERS = [
    _query("team", OpenApiTypes.STR, "Only entries of the team of this slug."),
    _query("action", OpenApiTypes.STR, "Only entries of this action.",
           enum=[value for value, _ in Action.choices]),
    _query("since", OpenApiTypes.DATETIME, "Only entries at or after this time (ISO 8601)."),
    _query("page", {"type": "integer", "minimum": 1}, "The page number, from 1."),
    _query("page_size", {"type": "integer", "minimum": 1, "maximum": 500},
           "Entries per page (default 50)."),
]


@extend_schema_view(
    list=extend_schema(
        summary="The audit trail of the teams the caller is admin of, newest first",
        description="Who did what, in which team, when and from where: every submit, stop, "
                    "re-run, delete, upload, role change, member added or removed, client "
                    "created or revoked. A team's admins read its entries; a superuser reads "
                    "all. A caller who is admin of no team gets a 403 naming the role admin.",
        parameters=AUDIT_FILTERS,
        responses={200: AuditEntrySerializer(many=True), **errors(400)},
    ),
)
class AuditViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The audit trail, read-only: no route adds, changes or deletes an entry."""

    serializer_class = AuditEntrySerializer
    filterset_class = AuditFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema is made with no caller
            return AuditEntry.objects.none()
        return audit_list(Caller.of(self.request))
