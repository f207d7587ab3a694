"""Who may use a pool and how much, as its file says: ``teams`` (open to these teams only),
``quotas`` per team (most holding a slot, most waiting) and ``weights`` (fair share). Read by
``definitions.parse_pool``; admission (apps.processes.admission) applies them."""

from __future__ import annotations

import math
import re
from typing import Any

from apps.pipelines.errors import DefinitionError

# A team's slug, as apps.teams makes them (Django's slugify, at most 50 characters).
TEAM_SLUG_RE = re.compile(r"^[-a-zA-Z0-9_]{1,50}$")
QUOTA_KINDS = ("running", "waiting")


def pool_teams(teams: Any) -> list[str] | None:
    """``teams: [lab, bio]``: the slugs of the teams the pool is open to; absent: every team."""
    if teams is None:
        return None
    if not isinstance(teams, list) or not teams or not all(
            isinstance(t, str) and TEAM_SLUG_RE.match(t) for t in teams):
        raise DefinitionError("teams: must be a list of team slugs (leave it out for a pool "
                              "open to every team)")
    return sorted(set(teams))


def team_key(key: Any, where: str, teams: list[str] | None, *, default: bool) -> str:
    """A key of ``quotas`` or ``weights``: a team slug the pool is open to (or ``default``)."""
    if default and key == "default":
        return key
    if not isinstance(key, str) or not TEAM_SLUG_RE.match(key):
        raise DefinitionError(f"{where}: {key!r} is not a team slug")
    if teams is not None and key not in teams:
        raise DefinitionError(f"{where}.{key}: the pool is not open to that team (teams: "
                              f"{', '.join(teams)})")
    return key


def pool_quotas(quotas: Any, teams: list[str] | None) -> dict[str, dict[str, int]]:
    """``quotas: {default: {running: 4, waiting: 100}, lab: {running: 10}}``: per team, the
    most processes holding a slot and the most waiting; a team's own entry wins over
    ``default`` key by key."""
    if quotas is None:
        return {}
    if not isinstance(quotas, dict):
        raise DefinitionError("quotas: must be a mapping of team slugs (or default) to "
                              "{running: N, waiting: M}")
    parsed = {}
    for key, limits in quotas.items():
        team = team_key(key, "quotas", teams, default=True)
        where = f"quotas.{team}"
        if not isinstance(limits, dict) or not limits or set(limits) - set(QUOTA_KINDS):
            raise DefinitionError(f"{where}: must be a mapping with running, waiting or both")
        for kind, value in limits.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DefinitionError(f"{where}.{kind}: must be a whole number of at least 1")
        parsed[team] = {kind: limits[kind] for kind in QUOTA_KINDS if kind in limits}
    return parsed


def pool_weights(weights: Any, teams: list[str] | None) -> dict[str, float]:
    """``weights: {lab: 2}``: a team's share of the pool against the others' (default 1)."""
    if weights is None:
        return {}
    if not isinstance(weights, dict):
        raise DefinitionError("weights: must be a mapping of team slugs to numbers")
    parsed = {}
    for key, value in weights.items():
        team = team_key(key, "weights", teams, default=False)
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or value <= 0):
            raise DefinitionError(f"weights.{team}: must be a number greater than 0")
        parsed[team] = value
    return parsed
