from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from apps.accounts.schema import error, errors
from apps.teams.access import Caller
from apps.teams.roles import Role
from apps.teams.selectors import (
    joinable_user,
    team_client_for,
    team_detail,
    team_for,
    team_list,
    team_member_for,
)
from apps.teams.serializers import (
    ROLE_NAMES,
    RoleChangeSerializer,
    TeamClientCreatedSerializer,
    TeamClientCreateSerializer,
    TeamClientSerializer,
    TeamDetailSerializer,
    TeamMemberAddSerializer,
    TeamMemberSerializer,
    TeamSerializer,
)
from apps.teams.services import (
    LastAdminError,
    team_client_create,
    team_client_revoke,
    team_client_role_change,
    team_member_join,
    team_member_remove,
    team_member_role_change,
)

SLUG_PATTERN = "[-a-zA-Z0-9_]+"
CLIENT_ID_PATTERN = "[^/]+"
USERNAME_PATTERN = "[^/]+"  # Django's usernames may hold dots: never a format suffix here
TEAM_SLUG = OpenApiParameter(
    "slug", {"type": "string", "pattern": f"^{SLUG_PATTERN}$"}, OpenApiParameter.PATH,
    description="The team's slug, as GET /api/teams/ lists it (`lab`).",
)
CLIENT_ID = OpenApiParameter(
    "client_id", {"type": "string", "pattern": f"^{CLIENT_ID_PATTERN}$"}, OpenApiParameter.PATH,
    description="The client's id, as GET /api/teams/<slug>/ lists it.")
USERNAME = OpenApiParameter(
    "username", {"type": "string", "pattern": f"^{USERNAME_PATTERN}$"}, OpenApiParameter.PATH,
    description="The member's username, as GET /api/teams/<slug>/ lists it.")

ADMIN_ONLY = ("Needs the role admin in the team (or a superuser); a team the caller is not in "
              "is a 404.")
# PATCH's body written out: drf-spectacular would describe a serializer's fields as optional
# for a PATCH (a partial update), and ``role`` is this one's whole point.
ROLE_CHANGE = {"type": "object", "required": ["role"], "additionalProperties": False,
               "properties": {"role": {"type": "string", "enum": Role.values,
                                       "description": f"The new role: {ROLE_NAMES}."}}}
ROLE_CHANGE_BODY = {media: ROLE_CHANGE for media in (
    "application/json", "application/x-www-form-urlencoded", "multipart/form-data")}
LAST_ADMIN = {409: error("The team's last admin (member or client) cannot be removed or "
                         "demoted.")}


class LastAdminConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "last_admin"


def _keeping_an_admin(change, *args, **kwargs):
    """Call a service that may remove or demote an admin; the last one is a 409."""
    try:
        return change(*args, **kwargs)
    except LastAdminError as exc:
        raise LastAdminConflict(str(exc)) from None


def _managed(request, slug: str | None):
    """The caller and the team ``slug`` it manages: 404 outside its teams, 403 naming the role
    admin when it holds a lower one there."""
    caller = Caller.of(request)
    return caller, team_for(caller, slug or "", "manage")


def _valid(serializer_class, request) -> dict:
    incoming = serializer_class(data=request.data)
    incoming.is_valid(raise_exception=True)
    return incoming.validated_data


@extend_schema_view(
    list=extend_schema(summary="The caller's teams and its role in each, a page at a time",
                       responses={200: TeamSerializer(many=True), **errors(400, 404)}),
    retrieve=extend_schema(summary="One of the caller's teams: its members and clients",
                           parameters=[TEAM_SLUG],
                           responses={200: TeamDetailSerializer, **errors(404)}),
    clients=extend_schema(
        summary="Create a client in the team: its id and secret, shown only now",
        description=f"{ADMIN_ONLY} The client gets a token at /o/token/ with them.",
        parameters=[TEAM_SLUG], request=TeamClientCreateSerializer,
        responses={201: TeamClientCreatedSerializer, **errors(400, 404)}),
    client=[
        extend_schema(
            methods=["PATCH"], summary="Change a client's role in the team",
            description=ADMIN_ONLY, parameters=[TEAM_SLUG, CLIENT_ID],
            request=ROLE_CHANGE_BODY,
            responses={200: TeamClientSerializer, **errors(400, 404), **LAST_ADMIN}),
        extend_schema(
            methods=["DELETE"], summary="Revoke a client: it leaves the team at once",
            description=f"{ADMIN_ONLY} A client then in no team loses its tokens and gets no "
                        "new one.",
            parameters=[TEAM_SLUG, CLIENT_ID], request=None,
            responses={204: None, **errors(404), **LAST_ADMIN}),
    ],
    members=extend_schema(
        summary="Add a user to the team with a role",
        description=ADMIN_ONLY, parameters=[TEAM_SLUG], request=TeamMemberAddSerializer,
        responses={201: TeamMemberSerializer, **errors(400, 404)}),
    member=[
        extend_schema(
            methods=["PATCH"], summary="Change a member's role in the team",
            description=ADMIN_ONLY, parameters=[TEAM_SLUG, USERNAME],
            request=ROLE_CHANGE_BODY,
            responses={200: TeamMemberSerializer, **errors(400, 404), **LAST_ADMIN}),
        extend_schema(
            methods=["DELETE"], summary="Remove a member from the team, at once",
            description=ADMIN_ONLY, parameters=[TEAM_SLUG, USERNAME], request=None,
            responses={204: None, **errors(404), **LAST_ADMIN}),
    ],
)
class TeamViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Teams: the caller's own (a superuser's: all). Another team is a 404. A team's admins
    (and superusers) manage its members and clients; every change is in the audit."""

    serializer_class = TeamSerializer
    lookup_field = "slug"
    lookup_value_regex = SLUG_PATTERN
    filter_backends = ()

    def get_queryset(self):
        return team_list(Caller.of(self.request))

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "roles": Caller.of(self.request).roles}

    def retrieve(self, request, *args, slug=None, **kwargs):
        team = team_for(Caller.of(request), slug or "")
        context = {**self.get_serializer_context(), "detail": team_detail(team)}
        return Response(TeamDetailSerializer(team, context=context).data)

    @action(detail=True, methods=["post"], url_path="clients")
    @method_decorator(sensitive_variables("secret"))
    def clients(self, request, slug=None):
        caller, team = _managed(request, slug)
        body = _valid(TeamClientCreateSerializer, request)
        application, secret = team_client_create(team, body["name"], body["role"],
                                                 actor=caller)
        answer = {"name": application.name, "client_id": application.client_id,
                  "client_secret": secret, "role": body["role"], "team": team.slug}
        # The secret is in this answer alone: no cache may keep it.
        return Response(answer, status=status.HTTP_201_CREATED,
                        headers={"Cache-Control": "no-store"})

    @action(detail=True, methods=["patch", "delete"],
            url_path=f"clients/(?P<client_id>{CLIENT_ID_PATTERN})")
    def client(self, request, slug=None, client_id=None):
        caller, team = _managed(request, slug)
        membership = team_client_for(team, client_id or "")
        if request.method == "DELETE":
            _keeping_an_admin(team_client_revoke, membership, actor=caller)
            return Response(status=status.HTTP_204_NO_CONTENT)
        role = _valid(RoleChangeSerializer, request)["role"]
        changed = _keeping_an_admin(team_client_role_change, membership, role, actor=caller)
        return Response(TeamClientSerializer(changed).data)

    @action(detail=True, methods=["post"], url_path="members")
    def members(self, request, slug=None):
        caller, team = _managed(request, slug)
        body = _valid(TeamMemberAddSerializer, request)
        user = joinable_user(body["username"])
        if user is None:
            raise ValidationError({"username": [
                f"No active user named {body['username']!r} (an OAuth2 client joins "
                "as a client: POST .../clients/)."]})
        membership = team_member_join(team, user, body["role"], actor=caller)
        return Response(TeamMemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["patch", "delete"],
            url_path=f"members/(?P<username>{USERNAME_PATTERN})")
    def member(self, request, slug=None, username=None):
        caller, team = _managed(request, slug)
        membership = team_member_for(team, username or "")
        if request.method == "DELETE":
            _keeping_an_admin(team_member_remove, membership, actor=caller)
            return Response(status=status.HTTP_204_NO_CONTENT)
        role = _valid(RoleChangeSerializer, request)["role"]
        changed = _keeping_an_admin(team_member_role_change, membership, role, actor=caller)
        return Response(TeamMemberSerializer(changed).data)
