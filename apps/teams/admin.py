"""Teams in the admin. A superuser manages every team; any other member sees their own teams
(``team_list``), and a team's admins change who is in it: its members (added by username,
role changed, removed) and its clients (role changed, removed). Only superusers create or
delete teams. Every change of who is in a team, and with which role, is audited once."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from operator import itemgetter

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.forms.formsets import DELETION_FIELD_NAME
from django.forms.models import BaseInlineFormSet

from apps.audit.models import Action
from apps.audit.services import audit_record
from apps.teams.access import Caller
from apps.teams.models import Team, TeamClient, TeamMember
from apps.teams.roles import Role
from apps.teams.selectors import team_list
from apps.teams.services import (
    team_client_add,
    team_client_revoke,
    team_client_role_change,
    team_member_join,
    team_member_remove,
    team_member_role_change,
)


def is_superuser(request) -> bool:
    return Caller.of(request).superuser


def manages(request, team) -> bool:
    """Whether the caller is an admin of ``team`` (a superuser: of every team, new ones too)."""
    caller = Caller.of(request)
    return caller.superuser or (team is not None and caller.may(team.pk, Role.ADMIN))


class MemberForm(forms.ModelForm):
    """A member by username: picking from a list of every user would show team admins the
    other teams' people. A member's user is fixed once added (remove and add instead)."""

    username = forms.CharField(max_length=150)

    class Meta:
        model = TeamMember
        fields = ("username", "role")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["username"].initial = self.instance.user.get_username()
            self.fields["username"].disabled = True

    def clean_username(self):
        username = self.cleaned_data["username"]
        if self.instance.pk is not None:
            return username
        user = get_user_model().objects.filter(
            **{get_user_model().USERNAME_FIELD: username}, is_active=True).first()
        if user is None:
            raise ValidationError(f"No active user {username!r}.")
        if TeamMember.objects.filter(team_id=self.instance.team_id, user=user).exists():
            raise ValidationError(f"{username} is a member already: change their role.")
        self.instance.user = user
        return username


class ClientForm(forms.ModelForm):
    """A client row: its role changes; which client it is does not (remove and add instead)."""

    class Meta:
        model = TeamClient
        fields = ("application", "role")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and "application" in self.fields:
            self.fields["application"].disabled = True


class LastAdminGuard(BaseInlineFormSet):
    """Refuses a save that would leave a team that had an admin with none: the members' and
    the clients' formsets are counted together, as they are saved together."""

    def __init__(self, *args, team_formsets=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.team_formsets = [] if team_formsets is None else team_formsets
        self.team_formsets.append(self)

    def pending_admins(self) -> int:
        """The admins of this formset's kind once it is saved."""
        admins = 0
        for form in self.forms:
            if not form.is_valid() or deleted(form):
                continue
            if form.instance.pk is None and not form.has_changed():
                continue  # an empty extra row
            admins += form.cleaned_data.get("role", form.instance.role) == Role.ADMIN
        return admins

    def clean(self):
        super().clean()
        team = self.instance
        if team.pk is None:
            return
        admins_now: dict[type | None, int] = {
            model: model.objects.filter(team=team, role=Role.ADMIN).count()
            for model in (TeamMember, TeamClient)}
        if self.pending_admins() >= admins_now.get(self.model, 0):
            return  # this formset removes or demotes no admin
        left = dict(admins_now)
        left.update({formset.model: formset.pending_admins() for formset in self.team_formsets})
        if not any(left.values()):
            raise ValidationError("A team keeps at least one admin: make another member or "
                                  "client admin before removing or demoting the last one.")


def deleted(form) -> bool:
    """Whether a valid form of a formset is ticked for deletion."""
    return bool(form.cleaned_data.get(DELETION_FIELD_NAME))


class MemberFormSet(LastAdminGuard):
    def clean(self):
        super().clean()
        added = [form.cleaned_data["username"] for form in self.forms
                 if form.instance.pk is None and form.is_valid() and form.has_changed()
                 and not deleted(form)]
        if len(added) != len(set(added)):
            raise ValidationError("The same user is added twice.")


class TeamInline(admin.TabularInline):
    """Rows of a team anyone in it sees; only its admins (and superusers) change them."""

    extra = 0
    formset = LastAdminGuard

    def has_add_permission(self, request, obj=None):
        return super().has_add_permission(request, obj) and manages(request, obj)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and manages(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and manages(request, obj)


class TeamMemberInline(TeamInline):
    model = TeamMember
    form = MemberForm
    formset = MemberFormSet
    extra = 1

    @admin.display(description="username")
    def username(self, membership):
        """The member, where the row is read-only (its form's field shows it elsewhere)."""
        return membership.user.get_username()


class TeamClientInline(TeamInline):
    model = TeamClient
    form = ClientForm
    raw_id_fields = ("application",)

    def get_readonly_fields(self, request, obj=None):
        # Clients are made for a team through the API; a team admin changes their role only.
        return () if is_superuser(request) else ("application",)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    inlines = (TeamMemberInline, TeamClientInline)

    def get_queryset(self, request):
        return team_list(Caller.of(request))

    def get_readonly_fields(self, request, obj=None):
        return () if is_superuser(request) else ("slug", "name", "created_at")

    def get_prepopulated_fields(self, request, obj=None):
        return {"slug": ("name",)} if is_superuser(request) else {}

    def has_add_permission(self, request):
        return is_superuser(request)

    def has_delete_permission(self, request, obj=None):
        return is_superuser(request)

    # A team admin saves their team's page for its inlines; its own fields stay read-only.
    def has_change_permission(self, request, obj=None):
        if is_superuser(request):
            return True
        may_manage = request.user.has_perm("teams.change_teammember")
        return may_manage and (obj is None or manages(request, obj))

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        # One list per request shared by the team's formsets: the last-admin guard counts them
        # all.
        kwargs["team_formsets"] = request.__dict__.setdefault("_team_formsets", [])
        return kwargs

    def save_related(self, request, form, formsets, change):
        """Apply the members' and clients' changes through the team services, each recording
        its one audit entry: additions and promotions to admin first, then the other role
        changes, then removals, so every step keeps an admin the end state keeps (the guard
        checked that end state)."""
        form.save_m2m()
        caller = Caller.of(request)
        steps: list[tuple[int, Callable[[], object]]] = []
        for formset in formsets:
            formset.save(commit=False)  # sorts the rows into new, changed and deleted
            for row in formset.new_objects:
                steps.append((ADD, partial(add_to_team, row, caller)))
            for row, changed in formset.changed_objects:
                if "role" in changed:  # the only field of a saved row that can change
                    change_role = ROLE_CHANGES[type(row)]
                    steps.append((PROMOTE if row.role == Role.ADMIN else DEMOTE,
                                  partial(change_role, row, row.role, actor=caller)))
            for row in formset.deleted_objects:
                steps.append((REMOVE, partial(REMOVALS[type(row)], row, actor=caller)))
        for _, step in sorted(steps, key=itemgetter(0)):
            step()


def add_to_team(row, caller: Caller) -> None:
    """A new member or client row of a team's page, saved and audited."""
    if isinstance(row, TeamMember):
        team_member_join(row.team, row.user, row.role, actor=caller)
        return
    # Only a superuser adds an existing client here (team admins create theirs through the
    # API): the client gains a role in the team.
    team_client_add(row.team, row.application, row.role)
    audit_record(caller, Action.ROLE_CHANGE, team=row.team,
                 target=f"client {row.application.client_id}",
                 detail={"from": None, "to": row.role})


# The order of a save's steps (see TeamAdmin.save_related).
ADD, PROMOTE, DEMOTE, REMOVE = range(4)
ROLE_CHANGES: dict[type, Callable[..., object]] = {
    TeamMember: team_member_role_change, TeamClient: team_client_role_change}
REMOVALS: dict[type, Callable[..., object]] = {
    TeamMember: team_member_remove, TeamClient: team_client_revoke}
