"""Reading teams, always as the caller may (apps.teams.access.Caller): a user through their
memberships, an OAuth2 client through its own (never its user's), a superuser everything."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404
from oauth2_provider.models import get_application_model

from apps.teams.access import ACTION_ROLES, Caller
from apps.teams.models import Team, TeamClient, TeamMember
from apps.teams.roles import SUBMIT_ROLE, Role


def team_list(caller: Caller, needed: str = Role.VIEWER) -> QuerySet[Team]:
    """The teams where the caller holds ``needed`` or more (every team for a superuser)."""
    teams = caller.team_ids(needed)
    return Team.objects.all() if teams is None else Team.objects.filter(pk__in=teams)


def team_get(slug: str, caller: Caller) -> Team | None:
    """The team ``slug`` when the caller is in it (a superuser: when it exists), else None:
    a team outside the caller's reach and one that does not exist look the same."""
    return team_list(caller).filter(slug=slug).first()


def team_for(caller: Caller, slug: str, action: str = "read") -> Team:
    """The team ``slug`` for ``action`` (a key of ACTION_ROLES: ``manage`` for its members and
    clients). Http404 when the caller is not in it, RoleTooLow (403) naming the role needed
    when its role there is too low."""
    team = team_get(slug, caller)
    if team is None:
        raise Http404("No such team.")
    if ACTION_ROLES[action] != Role.VIEWER:
        caller.require(team.pk, action)
    return team


def team_client_for(team: Team, client_id: str) -> TeamClient:
    """The membership of the client ``client_id`` in ``team``; Http404 when it is not in it."""
    found = team.clients.select_related("team", "application").filter(
        application__client_id=client_id).first()
    if found is None:
        raise Http404("No such client in this team.")
    return found


def team_member_for(team: Team, username: str) -> TeamMember:
    """The membership of the user ``username`` in ``team``; Http404 when it is not in it."""
    found = team.members.select_related("team", "user").filter(user__username=username).first()
    if found is None:
        raise Http404("No such member in this team.")
    return found


def joinable_user(username: str):
    """The active user ``username`` who may join a team as a member, or None: an OAuth2
    client's stand-in user joins only as that client (POST .../clients/)."""
    clients_users = get_application_model().objects.filter(user__isnull=False).values("user_id")
    users = get_user_model().objects.filter(is_active=True).exclude(pk__in=clients_users)
    return users.filter(username=username).first()


def team_detail(team: Team) -> dict:
    """Who is in ``team``: members (username, role) and clients (name, client_id, role)."""
    members = team.members.select_related("user").order_by("user__username")
    clients = team.clients.select_related("application").order_by("application__name")
    return {
        "members": [{"username": m.user.get_username(), "role": m.role} for m in members],
        "clients": [{"name": c.application.name, "client_id": c.application.client_id,
                     "role": c.role} for c in clients],
    }


def submit_team(slug: str | None, caller: Caller) -> Team | None:
    """The team a new process of the caller belongs to. Named by ``slug``: that team, when the
    caller may submit there (a superuser: any team); unnamed: the caller's one team it may
    submit for. A team the caller is in with a role too low (a viewer, a read-only token) is
    a RoleTooLow (403) naming the role needed. Raises ValidationError naming ``team``
    otherwise, never saying whether a team it is not in exists. A superuser in no team who
    names none gets None (no team)."""
    if slug:
        team = Team.objects.filter(slug=slug).first()
        if team is not None and caller.role_in(team.pk) is not None:
            caller.require(team.pk, "submit")
            return team
        raise ValidationError({"team": [
            f"Not a team you may submit for: {slug!r}; your teams are in GET /api/teams/, "
            f"submitting needs the role {SUBMIT_ROLE.value} or higher."]})
    submitting = [pk for pk in caller.roles if caller.may(pk, SUBMIT_ROLE)]
    if len(submitting) == 1:
        return caller.teams[submitting[0]]
    if len(submitting) > 1:
        raise ValidationError({"team": [
            "You submit for several teams: name one (its slug, as GET /api/teams/ lists it)."]})
    if caller.superuser and not caller.roles:
        return None
    if caller.roles:  # in teams, none where it may submit
        caller.require(min(caller.roles), "submit")
    raise ValidationError({"team": [
        f"You are in no team you may submit for (it needs the role {SUBMIT_ROLE.value} "
        "or higher)."]})
