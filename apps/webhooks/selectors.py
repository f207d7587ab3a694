"""Webhooks and deliveries, always through the caller's teams: a team's members see its
hooks and deliveries, its admins make and delete hooks."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError

from apps.teams.access import Caller, in_teams, one_in_reach
from apps.teams.models import Team
from apps.teams.roles import Role
from apps.webhooks.models import Delivery, Webhook


def webhook_list(caller: Caller) -> QuerySet[Webhook]:
    return in_teams(Webhook.objects.select_related("team"), caller)


def webhook_for(caller: Caller, pk, action: str = "read") -> Webhook:
    return one_in_reach(webhook_list(caller), caller, pk, action, "webhook")


def delivery_list(caller: Caller) -> QuerySet[Delivery]:
    return in_teams(Delivery.objects.select_related("team"), caller)


def managed_team(slug: str | None, caller: Caller) -> Team:
    """The team a new hook is for: named, when the caller administers it; unnamed, the one
    team it administers. ValidationError naming ``team`` otherwise (the same words whether
    the team exists or not)."""
    if slug:
        team = Team.objects.filter(slug=slug).first()
        if team is not None and caller.may(team.pk, Role.ADMIN):
            return team
        raise ValidationError({"team": [f"Not a team you administer: {slug!r}; webhooks "
                                        "need the role admin."]})
    managed = [pk for pk in caller.roles if caller.may(pk, Role.ADMIN)]
    if len(managed) == 1:
        return Team.objects.get(pk=managed[0])
    raise ValidationError({"team": [
        "Name the team (its slug): you administer several." if managed
        else "Webhooks are made by a team's admins; you administer no team."]})
