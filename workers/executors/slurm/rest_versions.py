"""What each slurmrestd API version (v0.0.38 ... v0.0.44) looks like to the slurm_rest target:
ONE TABLE PER VERSION, and the choice among them from what the daemon serves.

Slurm keeps only its latest few versions in each release: 22.05 serves v0.0.36-v0.0.38, 23.02
v0.0.37-v0.0.39, 23.11 v0.0.38-v0.0.40, 24.05 v0.0.39-v0.0.41, 24.11 v0.0.40-v0.0.42, 25.05
v0.0.41-v0.0.43, 25.11 v0.0.42-v0.0.44. The executor reads the list the daemon serves from its
OpenAPI document (``GET /openapi/v3``, which 24.11 answers only to an authenticated request) and
uses the newest one it knows, or the one the pool pins (``api_version``).

The executor describes a job once, as a neutral dict in v0.0.38's names (``name``,
``environment`` as a dict, ``time_limit`` in minutes, ``memory_per_node`` in MB, ``gres``...);
each table maps those names and values to its own. A name a table does not map goes through
as it is. What changed, as the tables spell it:

- v0.0.39: ``environment`` is a list of ``NAME=value``; ``time_limit`` and ``memory_per_node``
  are ``{"set": true, "number": N}`` objects; ``gres`` is gone (``tres_per_node``, each item
  ``gres/``-prefixed); a job's ``exit_code`` is such an object holding the raw wait status.
- v0.0.39 and later, the sbatch options: ``nodes`` is no longer ``[min, max]`` but
  ``minimum_nodes`` and ``maximum_nodes``; ``mail_type`` a list of flags (``TIME=90%`` for
  sbatch's ``TIME_LIMIT_90``, ``INVALID_DEPENDENCY``; ``ALL`` spelled out); ``exclusive`` is
  ``shared``: ``["none"]`` for the whole node, ``["user"]``, ``["mcs"]``. 24.11 checked it:
  v0.0.42 has no ``exclusive`` and drops it silently (the job shares its node), and v0.0.41
  and v0.0.42 answer a flag they cannot read with an error yet submit the job all the same
  (``rest.SlurmRestExecutor.submit_job`` cancels it).
  ``constraints``, ``tasks``, ``cpus_per_task``, ``reservation``, ``mail_user`` and
  ``current_working_directory`` keep their names and shapes.
- v0.0.40 and later: a job's ``job_state`` is a list (the base state and its flags, such as
  COMPLETING); ``exit_code`` an object with ``status`` (EXITED, ERROR, SIGNALED...),
  ``return_code`` and ``signal``; ``submit_time`` a number object; an unknown job is HTTP 404
  (500 before), still error 2017.
- v0.0.40 and later: a refused token is HTTP 511 with error 1007 (HTTP 500 with -1 or 5005
  before); an error's specific words are in ``error``, no longer in ``description``.
- v0.0.42 and later: DELETE reports each job's failure in ``status[].error.code`` rather than
  in ``errors``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .states import exit_from_wait_status

# --- the shapes, as small functions the tables name ------------------------------------------


def as_is(value: Any) -> Any:
    return value


def env_list(env: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in env.items()]


def no_val(number: int) -> dict[str, Any]:
    """Slurm's ``*_no_val`` number object: set, not infinite."""
    return {"set": True, "infinite": False, "number": number}


def gres_as_tres(gres: str) -> str:
    """``gpu:1,nvme:2`` -> ``gres/gpu:1,gres/nvme:2``: TRES names each item by its kind."""
    return ",".join(f"gres/{item}" for item in gres.split(","))


def node_range(nodes: list[int]) -> dict[str, int]:
    """v0.0.38's ``[min, max]`` as the two fields of later versions."""
    low, high = nodes
    return {"minimum_nodes": low, "maximum_nodes": high}


# sbatch's --mail-type words (v0.0.38 takes them comma-joined) -> the flags of v0.0.39 and later.
MAIL_FLAGS = {"INVALID_DEPEND": "INVALID_DEPENDENCY", "TIME_LIMIT": "TIME=100%",
              "TIME_LIMIT_90": "TIME=90%", "TIME_LIMIT_80": "TIME=80%",
              "TIME_LIMIT_50": "TIME=50%"}
# What sbatch's ALL stands for, as 22.05's and 24.11's scontrol show it.
MAIL_ALL = ("INVALID_DEPEND", "BEGIN", "END", "FAIL", "REQUEUE", "STAGE_OUT")


def mail_flags(types: str) -> list[str]:
    """``END,FAIL`` -> ``["END", "FAIL"]``; NONE anywhere means no mail, as sbatch reads it
    (an empty list: 24.11 then sends none)."""
    words = types.split(",")
    if "NONE" in words:
        return []
    words = [w for word in words for w in (MAIL_ALL if word == "ALL" else (word,))]
    return list(dict.fromkeys(MAIL_FLAGS.get(word, word) for word in words))


# v0.0.38's exclusive (sbatch's words) -> how the job may share its node.
SHARED = {"exclusive": "none", "user": "user", "mcs": "mcs"}


def shared_flags(exclusive: str) -> list[str]:
    return [SHARED[exclusive]]


def number_of(value: Any) -> int | None:
    """A plain number, or the number of a set ``*_no_val`` object; None when unset."""
    if isinstance(value, dict):
        return value.get("number") if value.get("set") and not value.get("infinite") else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# The flags a v0.0.40+ ``job_state`` list may carry beside its base state, in the order
# Slurm's own job_state_string() names the state by them: what squeue prints, and what the
# one table of states (states.py) is keyed by.
STATE_FLAGS = ("COMPLETING", "STAGE_OUT", "CONFIGURING", "RESIZING", "REQUEUED", "REQUEUE_FED",
               "REQUEUE_HOLD", "SPECIAL_EXIT", "STOPPED", "REVOKED", "RESV_DEL_HOLD",
               "SIGNALING")


def state_of_list(states: Any) -> str:
    """``["COMPLETED", "COMPLETING"]`` -> ``COMPLETING`` (as squeue says); ``["RUNNING"]`` ->
    ``RUNNING``."""
    if isinstance(states, str):
        return states
    names = [str(s).upper() for s in states or []]
    for flag in STATE_FLAGS:
        if flag in names:
            return flag
    return next((n for n in names if n not in STATE_FLAGS), "")


def exit_of_wait_status(raw: Any) -> int | None:
    return exit_from_wait_status(number_of(raw))


def exit_of_verbose(code: Any) -> int | None:
    """v0.0.40+'s ``{"status": [...], "return_code": {...}, "signal": {"id": {...}}}``: the
    code, or 128 + the signal that killed the job; None while it has none (PENDING)."""
    if not isinstance(code, dict):
        return None
    status = {str(s).upper() for s in code.get("status") or []}
    signal = number_of((code.get("signal") or {}).get("id"))
    if "SIGNALED" in status and signal:
        return 128 + signal
    if status & {"PENDING", "INVALID"} or not status:
        return None
    return number_of(code.get("return_code"))


def errors_of_delete_status(answer: dict) -> list[dict]:
    """v0.0.42+: a cancel's failures are per job, in ``status[].error``."""
    found = []
    for item in answer.get("status") or []:
        error = item.get("error") or {}
        if error.get("code"):
            found.append({"error_number": error["code"], "error": error.get("string", ""),
                          "description": error.get("message", "")})
    return found


def no_errors(answer: dict) -> list[dict]:
    return []


# --- the tables --------------------------------------------------------------------------------

# A neutral field written as one field: (this version's name, how the value is written); or as
# several: a function of the value giving them by name.
Field = tuple[str, Callable[[Any], Any]] | Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class RestVersion:
    """One slurmrestd API version: how a job is described and submitted, and how its answers
    read. Paths are under ``/slurm/<name>/``."""

    name: str
    releases: str  # the Slurm releases that serve it, for messages and docs
    # neutral (v0.0.38) job field -> (this version's name, how the value is written)
    job_fields: dict[str, Field] = field(default_factory=dict)
    submit_path: str = "job/submit"
    jobs_path: str = "jobs"
    job_path: str = "job/{job_id}"  # GET one job; DELETE cancels it
    job_state: Callable[[Any], str] = str
    exit_code: Callable[[Any], int | None] = exit_of_wait_status
    submit_time: Callable[[Any], int | None] = number_of
    cancel_errors: Callable[[dict], list[dict]] = no_errors
    # The error numbers that mean slurmctld refused the token (slurmrestd says no more):
    # 22.05's "Unspecified error" (-1) to a listing and "Zero Bytes were transmitted or
    # received" (5005) to a submission or a cancel; 24.11's authentication error (1007).
    refused_token: frozenset[int] = frozenset({-1, 5005})

    def job(self, neutral: dict[str, Any]) -> dict[str, Any]:
        """The job description in this version's names and shapes."""
        out: dict[str, Any] = {}
        for key, value in neutral.items():
            mapped = self.job_fields.get(key, (key, as_is))
            if callable(mapped):
                out.update(mapped(value))
            else:
                name, write = mapped
                out[name] = write(value)
        return out

    def submit_body(self, neutral: dict[str, Any], script: str) -> dict[str, Any]:
        return {"job": self.job(neutral), "script": script}


# v0.0.39 onwards: the job description's changed fields (the same up to v0.0.44).
_SINCE_39: dict[str, Field] = {
    "environment": ("environment", env_list),
    "time_limit": ("time_limit", no_val),
    "memory_per_node": ("memory_per_node", no_val),
    "memory_per_cpu": ("memory_per_cpu", no_val),
    "gres": ("tres_per_node", gres_as_tres),
    # The sbatch options (sbatch_options.rest_fields) whose names or shapes changed.
    "nodes": node_range,
    "mail_type": ("mail_type", mail_flags),
    "exclusive": ("shared", shared_flags),
}

_REFUSED_SINCE_40 = frozenset({1007, -1, 5005})

V0_0_38 = RestVersion("v0.0.38", "21.08-23.02")
V0_0_39 = RestVersion("v0.0.39", "23.02-24.05", job_fields=_SINCE_39)
V0_0_40 = RestVersion("v0.0.40", "23.11-24.11", job_fields=_SINCE_39,
                      job_state=state_of_list, exit_code=exit_of_verbose,
                      refused_token=_REFUSED_SINCE_40)
V0_0_41 = RestVersion("v0.0.41", "24.05-25.05", job_fields=_SINCE_39,
                      job_state=state_of_list, exit_code=exit_of_verbose,
                      refused_token=_REFUSED_SINCE_40)
V0_0_42 = RestVersion("v0.0.42", "24.11-25.11", job_fields=_SINCE_39,
                      job_state=state_of_list, exit_code=exit_of_verbose,
                      cancel_errors=errors_of_delete_status, refused_token=_REFUSED_SINCE_40)
V0_0_43 = RestVersion("v0.0.43", "25.05-", job_fields=_SINCE_39,
                      job_state=state_of_list, exit_code=exit_of_verbose,
                      cancel_errors=errors_of_delete_status, refused_token=_REFUSED_SINCE_40)
V0_0_44 = RestVersion("v0.0.44", "25.11-", job_fields=_SINCE_39,
                      job_state=state_of_list, exit_code=exit_of_verbose,
                      cancel_errors=errors_of_delete_status, refused_token=_REFUSED_SINCE_40)

VERSIONS: dict[str, RestVersion] = {
    v.name: v for v in (V0_0_38, V0_0_39, V0_0_40, V0_0_41, V0_0_42, V0_0_43, V0_0_44)}

_SERVED = re.compile(r"/slurm/(v\d+\.\d+\.\d+)/")


def version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.lstrip("v").split("."))


def served_versions(openapi: dict) -> list[str]:
    """The slurmctld API versions an OpenAPI document has paths for, oldest first."""
    paths = openapi.get("paths") if isinstance(openapi, dict) else None
    found = {m[1] for path in paths or {} if (m := _SERVED.match(path))}
    return sorted(found, key=version_key)


class NoCommonVersion(ValueError):
    """The daemon serves no version this worker knows, or not the one the pool pins."""


def choose(served: list[str], pinned: str | None = None) -> RestVersion:
    """The version to speak: ``pinned`` when the daemon serves it, else the newest version
    both know. Raises NoCommonVersion with a message that names what the daemon serves."""
    offered = ", ".join(served) or "no slurmctld API version"
    known = ", ".join(VERSIONS)
    if pinned:
        if pinned not in VERSIONS:
            raise NoCommonVersion(f"settings.api_version {pinned} is not a version this worker "
                                  f"speaks ({known})")
        if pinned not in served:
            raise NoCommonVersion(f"settings.api_version pins {pinned}, but slurmrestd serves "
                                  f"{offered}")
        return VERSIONS[pinned]
    common = [name for name in served if name in VERSIONS]
    if not common:
        raise NoCommonVersion(f"slurmrestd serves {offered}; this worker speaks {known}")
    return VERSIONS[max(common, key=version_key)]
