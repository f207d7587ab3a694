"""Recording what was done: the services that act (submit, stop, re-run, team changes, pool
pause and resume) call
``audit_record`` once per action they carry out, inside their own transaction."""

from __future__ import annotations

from apps.audit.models import AuditEntry
from apps.teams.access import Caller


def audit_record(caller: Caller | None, action: str, *, team=None, target: str = "",
                 detail: dict | None = None) -> AuditEntry:
    """One entry: ``caller`` (None: the system itself) did ``action`` to ``target`` in
    ``team``."""
    return AuditEntry.objects.create(
        actor=caller.label if caller is not None else "system",
        user=caller.user if caller is not None else None,  # type: ignore[misc]
        application=caller.application if caller is not None else None,
        team=team, team_slug=team.slug if team is not None else "",
        action=action, target=target, detail=detail or {},
        remote_addr=(caller.remote_addr or None) if caller is not None else None,
    )
