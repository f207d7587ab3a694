"""The roles a member or client holds in a team, weakest first."""

from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "viewer"  # reads the team's processes
    OPERATOR = "operator", "operator"  # also submits, stops, re-runs
    ADMIN = "admin", "admin"  # also manages the team's members and clients


RANKS = {role: rank for rank, role in enumerate(Role)}

# The weakest role that may submit a process for a team.
SUBMIT_ROLE = Role.OPERATOR


def role_at_least(role: str, needed: str) -> bool:
    """Whether ``role`` grants everything ``needed`` does (an unknown role grants nothing)."""
    have = RANKS.get(role)  # type: ignore[call-overload]  # a str finds its Role: same hash
    return have is not None and have >= RANKS[Role(needed)]
