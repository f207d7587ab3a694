"""Django permissions from team roles: a staff member works in the admin with exactly what
their role allows, with no permission granted by hand.

These permissions are the door, never the wall: ``processes.stop_process`` says the user may
stop processes somewhere; which ones is always decided by the selectors
(``process_list(Caller.of(request), Role.OPERATOR)`` and the like). So a user holds the
permissions of their strongest role in any team, and no object-level permission here."""

from __future__ import annotations

from django.contrib.auth.backends import BaseBackend

from apps.teams.models import TeamMember
from apps.teams.roles import RANKS, Role

# What each role adds to the roles below it.
_ROLE_ADDS: dict[Role, frozenset[str]] = {
    Role.VIEWER: frozenset({
        "processes.view_process", "processes.view_processevent",
        "pipelines.view_pipeline", "pipelines.view_pipelineversion", "pipelines.view_pool",
        "teams.view_team", "teams.view_teammember", "teams.view_teamclient",
        "datasets.view_dataset", "sweeps.view_sweep",
    }),
    Role.OPERATOR: frozenset({
        "processes.stop_process", "processes.rerun_process", "processes.delete_process",
    }),
    Role.ADMIN: frozenset({
        "teams.add_teammember", "teams.change_teammember", "teams.delete_teammember",
        "teams.change_teamclient", "teams.delete_teamclient",
        "audit.view_auditentry",
    }),
}

# Role -> every permission it grants: its own and those of each weaker role.
ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    role: frozenset().union(*(adds for weaker, adds in _ROLE_ADDS.items()
                              if RANKS[weaker] <= RANKS[role]))
    for role in Role
}


def strongest_role(user) -> Role | None:
    """The user's strongest role in any of their teams (None: in no team)."""
    roles = [Role(r) for r in TeamMember.objects.filter(user=user).values_list("role", flat=True)
             if r in Role.values]
    return max(roles, key=RANKS.__getitem__, default=None)


class TeamRoleBackend(BaseBackend):
    """Grants the permissions of a user's team roles. It authenticates nobody: signing in
    stays with ModelBackend."""

    def authenticate(self, request, **credentials):
        return None

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        # Objects are the selectors' business; an inactive or anonymous user gets nothing.
        if obj is not None or not user_obj.is_active or user_obj.is_anonymous:
            return set()
        if not hasattr(user_obj, "_team_role_perm_cache"):  # one query per request's user
            role = strongest_role(user_obj)
            user_obj._team_role_perm_cache = set(ROLE_PERMISSIONS[role]) if role else set()
        return user_obj._team_role_perm_cache

    def has_perm(self, user_obj, perm, obj=None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)

    def has_module_perms(self, user_obj, app_label) -> bool:
        return any(perm.partition(".")[0] == app_label
                   for perm in self.get_all_permissions(user_obj))
