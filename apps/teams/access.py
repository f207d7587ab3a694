"""Who is asking, and what they may do in each team: the one reading of a caller's rights that
every selector, view, admin page and action goes through.

A browser user's rights are their memberships (TeamMember); an OAuth2 client's are its own
(TeamClient), never its user's; a superuser may do everything everywhere. ``is_staff`` grants
nothing here: it only lets a user sign in to the admin. A token's scopes narrow it further: a
token without ``write`` acts as a viewer whatever its client's role."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404
from rest_framework.exceptions import PermissionDenied

from apps.teams.models import Team, TeamClient, TeamMember
from apps.teams.roles import RANKS, Role, role_at_least

# What each role is for, in the words of a refusal ("Stopping a process needs ...").
ACTION_ROLES: dict[str, Role] = {
    "read": Role.VIEWER,
    "submit": Role.OPERATOR,
    "stop": Role.OPERATOR,
    "re-run": Role.OPERATOR,
    "upload": Role.OPERATOR,
    "delete": Role.OPERATOR,
    "manage": Role.ADMIN,
}


class RoleTooLow(PermissionDenied):
    """The caller sees the object but its role in the object's team is below the action's."""

    default_code = "role_too_low"


@dataclass(frozen=True)
class Caller:
    user: object = None
    application: object = None
    roles: Mapping[int, str] = field(default_factory=dict)  # team id -> role
    teams: Mapping[int, Team] = field(default_factory=dict)  # team id -> team, of ``roles``
    superuser: bool = False
    scopes: frozenset[str] | None = None  # a token's scopes; None for a session
    remote_addr: str = ""

    @classmethod
    def of(cls, request) -> Caller:
        """The caller of a DRF or Django request (memoised on it: one query per request)."""
        cached = getattr(request, "_orchestration_caller", None)
        if cached is not None:
            return cached
        user = getattr(request, "user", None)
        auth = getattr(request, "auth", None)
        application = getattr(auth, "application", None)
        scopes = frozenset(auth.scope.split()) if auth is not None and hasattr(auth, "scope") \
            else None
        caller = cls.for_(user, application, scopes=scopes,
                          remote_addr=request.META.get("REMOTE_ADDR", ""))
        request._orchestration_caller = caller
        return caller

    @classmethod
    def for_(cls, user, application=None, *, scopes=None, remote_addr: str = "") -> Caller:
        """The caller acting as ``application`` (a token's client) or else as ``user``."""
        authenticated = user is not None and getattr(user, "is_authenticated", False)
        # The teams come with the roles (one query): a submit needs its team's row.
        held: list[TeamClient] | list[TeamMember]
        if application is not None:
            held = list(TeamClient.objects.filter(application=application).select_related("team"))
        elif authenticated and user.is_active:
            held = list(TeamMember.objects.filter(user=user).select_related("team"))
        else:
            held = []
        roles = {row.team_id: row.role for row in held}
        teams = {row.team_id: row.team for row in held}
        # A client's user is a stand-in for the client: it is never a superuser's power.
        superuser = bool(application is None and authenticated and user.is_active
                         and user.is_superuser)
        return cls(user=user if authenticated else None, application=application, roles=roles,
                   teams=teams, superuser=superuser, scopes=scopes, remote_addr=remote_addr)

    @property
    def writes(self) -> bool:
        """Whether the caller's credential may change anything (a session: yes)."""
        return self.scopes is None or "write" in self.scopes

    def role_in(self, team_id: int | None) -> str | None:
        """The caller's effective role in a team: a superuser is an admin everywhere; a token
        without ``write`` is at most a viewer."""
        role = Role.ADMIN.value if self.superuser else self.roles.get(team_id)  # type: ignore[arg-type]
        if role is None:
            return None
        if not self.writes and RANKS[Role(role)] > RANKS[Role.VIEWER]:
            return Role.VIEWER.value
        return role

    def may(self, team_id: int | None, needed: str) -> bool:
        role = self.role_in(team_id)
        return role is not None and role_at_least(role, needed)

    def team_ids(self, needed: str = Role.VIEWER) -> list[int] | None:
        """The teams where the caller holds ``needed`` or more; None means every team (a
        superuser)."""
        if self.superuser:
            return None
        return [team for team in self.roles if self.may(team, needed)]

    def require(self, team_id: int | None, action: str) -> None:
        """Raise RoleTooLow (403) naming the role ``action`` needs, when the caller lacks it.
        Call it only on objects the caller may see: an unseen one is a 404 before this."""
        needed = ACTION_ROLES[action]
        if not self.may(team_id, needed):
            have = self.role_in(team_id) or "none"
            raise RoleTooLow(f"{action.capitalize()} needs the role {needed.value} or higher "
                             f"in the team; yours is {have}.")

    @property
    def label(self) -> str:
        """Who acts, for events and the audit: ``client:NAME`` or ``user:NAME``."""
        if self.application is not None:
            return f"client:{getattr(self.application, 'name', self.application)}"
        if self.user is not None:
            return f"user:{self.user.get_username()}"  # type: ignore[attr-defined]
        return "anonymous"


def in_teams(objects: QuerySet, caller: Caller, needed: str = Role.VIEWER) -> QuerySet:
    """The rows of ``objects`` (anything with a ``team``) in the teams where ``caller`` holds
    ``needed`` or more: every row for a superuser."""
    teams = caller.team_ids(needed)
    return objects if teams is None else objects.filter(team_id__in=teams)


def one_in_reach(objects: QuerySet, caller: Caller, pk, action: str, what: str):
    """The row ``pk`` of ``objects`` (already narrowed by ``in_teams``) for ``action``.
    Http404 ("No such <what>.") when the caller cannot see it or ``pk`` is no id of it: the
    answer never says whether it exists; RoleTooLow (403) naming the role needed when the
    caller sees it but may not do that."""
    try:
        found = objects.filter(pk=pk).first()
    except (ValidationError, ValueError):  # not an id of this kind: simply not one of yours
        found = None
    if found is None:
        raise Http404(f"No such {what}.")
    if ACTION_ROLES[action] != Role.VIEWER:
        caller.require(found.team_id, action)
    return found


def sees_operations(caller: Caller) -> bool:
    """Whether the caller runs the service: every pool's workers and load, health details.
    A superuser, or a user (a client's through its stand-in user) granted Django's "view
    worker" permission (``create_client --staff``); never ``is_staff`` alone."""
    if caller.superuser:
        return True
    user = caller.user
    return user is not None and user.has_perm("pipelines.view_worker")  # type: ignore[attr-defined]
