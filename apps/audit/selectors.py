"""Reading the audit trail, as the caller may: a team's entries are its admins' to read
(a superuser reads every entry, those of no team and of deleted teams included)."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.audit.models import AuditEntry
from apps.teams.access import Caller, RoleTooLow
from apps.teams.roles import Role


def audit_list(caller: Caller) -> QuerySet[AuditEntry]:
    """The entries of the teams where ``caller`` is admin, newest first; every entry for a
    superuser. RoleTooLow (403) naming the role admin when it is admin of no team."""
    teams = caller.team_ids(Role.ADMIN)
    if teams is None:
        return AuditEntry.objects.all()
    if not teams:
        raise RoleTooLow(f"Reading the audit needs the role {Role.ADMIN.value} in a team; "
                         "you are admin of none.")
    return AuditEntry.objects.filter(team_id__in=teams)
