"""A pipeline's ``retry:``: which ends of a job start another attempt, how many, how soon."""

from __future__ import annotations

from typing import Any

from apps.pipelines.errors import DefinitionError
from apps.pipelines.resources import parse_duration
from workers.contract import END_REASONS

RETRY_KEYS = frozenset({"attempts", "on", "exit_codes", "delay"})
RETRY_ATTEMPTS_MAX = 100


def parse_retry(data: Any) -> dict[str, Any] | None:
    """``retry: {attempts: 3, on: [lost, preempted], exit_codes: [75], delay: 30s}`` ->
    ``{"attempts": 3, "on": [...], "exit_codes": [...], "delay_s": 30}``: how many attempts a
    run gets at most (the first included), which ends of a job start another (a reason the
    target gave, an exit code) and how long the next one waits. None when absent."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise DefinitionError("retry: must be a mapping with attempts, on, exit_codes, delay")
    # YAML 1.1 reads a bare ``on`` key as the boolean true: it is the ``on`` key here.
    data = {("on" if key is True else key): value for key, value in data.items()}
    unknown = set(data) - RETRY_KEYS
    if unknown:
        raise DefinitionError(f"retry: unknown keys {', '.join(sorted(map(str, unknown)))}")
    attempts = data.get("attempts")
    if (isinstance(attempts, bool) or not isinstance(attempts, int)
            or not 1 <= attempts <= RETRY_ATTEMPTS_MAX):
        raise DefinitionError(f"retry.attempts: required, a whole number from 1 to "
                              f"{RETRY_ATTEMPTS_MAX} (the first attempt included)")
    on = data.get("on") or []
    if not isinstance(on, list) or not all(isinstance(r, str) and r in END_REASONS for r in on):
        raise DefinitionError(f"retry.on: must be a list of {', '.join(END_REASONS)}")
    codes = data.get("exit_codes") or []
    if not isinstance(codes, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 255 for c in codes):
        raise DefinitionError("retry.exit_codes: must be a list of exit codes from 1 to 255")
    if not (on or codes):
        raise DefinitionError("retry: name what to retry, in on, exit_codes or both")
    delay = data.get("delay", 0)
    delay_s = 0 if delay in (0, "0", "0s") else parse_duration(delay, "retry.delay")
    return {"attempts": attempts, "on": sorted(set(on)), "exit_codes": sorted(set(codes)),
            "delay_s": delay_s}
