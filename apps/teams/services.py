"""Writing teams and who belongs to them.

The ``team_*`` services a team admin's request calls (creating and revoking clients, adding
and removing members, changing a role) each record one audit entry in their own transaction,
and never leave a team without an admin. ``team_client_add`` and ``team_member_add`` are the
plain upserts the commands and the migration build on: they record nothing."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import (
    AbstractApplication,
    AccessToken,
    RefreshToken,
    get_application_model,
)

from apps.audit.models import Action
from apps.audit.services import audit_record
from apps.teams.access import Caller
from apps.teams.models import Team, TeamClient, TeamMember
from apps.teams.roles import Role
from apps.teams.slugs import unique_slug

# A client acts through a user of its own, ``client-NAME``: its name must make a username.
CLIENT_USER_PREFIX = "client-"
CLIENT_NAME_MAX = 150 - len(CLIENT_USER_PREFIX)


class LastAdminError(Exception):
    """Removing or demoting this admin would leave the team with none: nobody could manage
    it any more but a superuser."""


def team_create(*, slug: str, name: str = "") -> Team:
    """A new team; its name defaults to its slug. The slug's uniqueness is the database's."""
    return Team.objects.create(slug=slug, name=name or slug)


def team_create_named(name: str) -> Team:
    """A team named ``name`` under a slug made from it, unique (``robot-2`` when ``robot`` is
    taken): the team a client made without one gets, as the migration gave every client."""
    with transaction.atomic():
        slug = unique_slug(name, lambda s: Team.objects.filter(slug=s).exists())
        return team_create(slug=slug, name=name)


def team_client_add(team: Team, application, role: str = Role.OPERATOR) -> TeamClient:
    """``application`` in ``team`` with ``role`` (its role there changed when it was in)."""
    membership, _ = TeamClient.objects.update_or_create(
        team=team, application=application, defaults={"role": role})
    return membership


def team_member_add(team: Team, user, role: str = Role.VIEWER) -> TeamMember:
    """``user`` in ``team`` with ``role`` (its role there changed when it was in)."""
    membership, _ = TeamMember.objects.update_or_create(
        team=team, user=user, defaults={"role": role})
    return membership


def operations_view_grant(user) -> None:
    """Let ``user`` (or the client it stands in for) see every pool's workers and the health
    details: Django's "view worker" permission. It shows no team's processes."""
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(
        content_type__app_label="pipelines", codename="view_worker"))


# --- clients ------------------------------------------------------------------------------------


def client_name_problems(name: str) -> list[str]:
    """Why ``name`` cannot name a new client (empty: it can)."""
    if not name:
        return ["A client needs a name."]
    if len(name) > CLIENT_NAME_MAX:
        return [f"At most {CLIENT_NAME_MAX} characters."]
    try:
        UnicodeUsernameValidator()(f"{CLIENT_USER_PREFIX}{name}")
    except ValidationError:
        return ["Letters, digits and @ . + - _ only."]
    if get_application_model().objects.filter(name=name).exists():
        return [f"A client named {name!r} exists already; pick another name."]
    if get_user_model().objects.filter(username=f"{CLIENT_USER_PREFIX}{name}").exists():
        return [f"A user named {CLIENT_USER_PREFIX + name!r} exists already; pick another "
                "client name, or delete that user first."]
    return []


def team_client_create(team: Team | None, name: str, role: str = Role.OPERATOR, *,
                       actor: Caller | None = None,
                       staff: bool = False) -> tuple[AbstractApplication, str]:
    """A new OAuth2 client (client-credentials grant) named ``name`` in ``team`` with ``role``
    (no team: a new one named after it), and its secret: returned only here, the database
    keeps its hash. ``staff`` also lets it see every pool's workers and the health details.
    Raises ValidationError naming ``name`` when the name is taken or cannot be a username.

    The client acts as a user of its own, ``client-NAME``, never an existing one: that user
    may be staff (or anyone's), and the client would inherit its rights and processes."""
    refused = client_name_problems(name)
    if refused:
        raise ValidationError({"name": refused})
    Application = get_application_model()
    secret = generate_client_secret()
    with transaction.atomic():
        try:
            with transaction.atomic():  # the username is unique: a racing twin fails here
                user = get_user_model().objects.create(username=f"{CLIENT_USER_PREFIX}{name}")
        except IntegrityError:
            raise ValidationError({"name": client_name_problems(name) or [
                f"A client named {name!r} exists already; pick another name."]}) from None
        if staff:
            operations_view_grant(user)
        application = Application.objects.create(
            name=name,
            user=user,
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
            client_secret=secret,  # hashed on save: this is the only time it is shown
        )
        team = team or team_create_named(name)
        team_client_add(team, application, role)
        audit_record(actor, Action.CLIENT_CREATE, team=team,
                     target=f"client {application.client_id}",
                     detail={"name": name, "role": str(role)})
    return application, secret


def team_client_revoke(membership: TeamClient, *, actor: Caller | None = None) -> bool:
    """Take a client out of its membership's team. A client then in no team at all is cut off
    at once: its tokens (access and refresh) are deleted and its user made inactive, so the
    token endpoint refuses it too. Returns whether it was cut off. Raises LastAdminError when
    it is the team's last admin."""
    with transaction.atomic():
        current = _locked(membership)
        _keep_an_admin(current, new_role=None)
        application = current.application
        current.delete()
        cut_off = not TeamClient.objects.filter(application=application).exists()
        if cut_off:
            _client_cut_off(application)
        audit_record(actor, Action.CLIENT_REVOKE, team=current.team,
                     target=f"client {application.client_id}",
                     detail={"name": application.name, "role": current.role,
                             "in_no_team": cut_off})
    return cut_off


def _client_cut_off(application) -> None:
    """No token of ``application`` works any more, and it gets no new one."""
    RefreshToken.objects.filter(application=application).delete()
    AccessToken.objects.filter(application=application).delete()
    if application.user_id is not None:
        get_user_model().objects.filter(pk=application.user_id).update(is_active=False)


def team_client_role_change(membership: TeamClient, role: str, *,
                            actor: Caller | None = None) -> TeamClient:
    """The client's role in its membership's team becomes ``role`` (see _role_change)."""
    return _role_change(membership, role, actor=actor,
                        target=f"client {membership.application.client_id}")


# --- members ------------------------------------------------------------------------------------


def team_member_join(team: Team, user, role: str = Role.VIEWER, *,
                     actor: Caller | None = None) -> TeamMember:
    """``user`` joins ``team`` with ``role``. Raises ValidationError naming ``username`` when
    it is a member already (its role changes through team_member_role_change)."""
    with transaction.atomic():
        _lock(team)
        if TeamMember.objects.filter(team=team, user=user).exists():
            raise ValidationError({"username": [
                f"{user.get_username()!r} is a member of {team.slug!r} already; change its "
                "role with PATCH instead."]})
        membership = TeamMember.objects.create(team=team, user=user, role=role)
        audit_record(actor, Action.MEMBER_ADD, team=team,
                     target=f"member {user.get_username()}", detail={"role": str(role)})
    return membership


def team_member_remove(membership: TeamMember, *, actor: Caller | None = None) -> None:
    """Take a member out of its team. Raises LastAdminError when it is the team's last
    admin."""
    with transaction.atomic():
        current = _locked(membership)
        _keep_an_admin(current, new_role=None)
        current.delete()
        audit_record(actor, Action.MEMBER_REMOVE, team=current.team,
                     target=f"member {current.user.get_username()}",
                     detail={"role": current.role})


def team_member_role_change(membership: TeamMember, role: str, *,
                            actor: Caller | None = None) -> TeamMember:
    """The member's role in its team becomes ``role`` (see _role_change)."""
    return _role_change(membership, role, actor=actor,
                        target=f"member {membership.user.get_username()}")


# --- what every change of a team's people shares ------------------------------------------------


def _role_change(membership, role: str, *, actor: Caller | None, target: str):
    """Set a member's or client's role, recording ``from`` and ``to`` once; the same role
    again changes and records nothing. Raises LastAdminError for the last admin's demotion."""
    with transaction.atomic():
        current = _locked(membership)
        if current.role == role:
            return current
        _keep_an_admin(current, new_role=role)
        before, current.role = current.role, role
        current.save(update_fields=["role"])
        audit_record(actor, Action.ROLE_CHANGE, team=current.team, target=target,
                     detail={"from": before, "to": str(role)})
    return current


def _lock(team: Team) -> None:
    """Serialise changes to one team's people (until the transaction ends): two admins
    demoting each other at once must not leave the team with none."""
    Team.objects.select_for_update().filter(pk=team.pk).first()


def _locked(membership):
    """``membership`` read again under its team's lock; Http404 when it went meanwhile."""
    _lock(membership.team)
    current = type(membership).objects.select_related("team").filter(pk=membership.pk).first()
    if current is None:
        raise Http404("No such member or client in this team.")
    return current


def _keep_an_admin(membership, new_role: str | None) -> None:
    """Raise LastAdminError when ``membership`` is its team's one admin (member or client)
    and would be removed (``new_role`` None) or demoted."""
    if membership.role != Role.ADMIN or new_role == Role.ADMIN:
        return
    team = membership.team
    others = (TeamMember.objects.filter(team=team, role=Role.ADMIN).count()
              + TeamClient.objects.filter(team=team, role=Role.ADMIN).count() - 1)
    if others < 1:
        raise LastAdminError(
            f"This is the last admin of team {team.slug!r}: a team keeps at least one admin "
            "(member or client). Make another admin first, then remove or demote this one.")
