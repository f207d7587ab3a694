"""What a job asks of its target, as pipeline files, pool files and POSTs write it: cpus,
memory and durations in their units, turned into what the job spec carries, and a pool's
limits on them."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from apps.pipelines.errors import DefinitionError
from workers.sbatch_options import outside_allowed

MEMORY_UNITS_MB = {"": 1, "m": 1, "mb": 1, "mi": 1, "mib": 1, "g": 1024, "gb": 1024,
                   "gi": 1024, "gib": 1024, "k": 1 / 1024, "kb": 1 / 1024, "ki": 1 / 1024}
DURATION_UNITS_S = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
DEFAULT_RESOURCES = {"cpus": 1, "memory_mb": 512, "gpus": 0, "time_limit_s": 3600}
# A resource as a file or a POST names it -> as the job spec and the API carry it.
RESOURCE_KEYS = {"cpus": "cpus", "memory": "memory_mb", "gpus": "gpus",
                 "time_limit": "time_limit_s"}


def parse_resources(data: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise DefinitionError("resources: must be a mapping")
    return {**DEFAULT_RESOURCES, **resource_values(data, "resources")}


def resource_values(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The resources ``data`` names, as the job spec carries them (``memory: 2G`` ->
    ``memory_mb: 2048``), and only those; DefinitionError naming the first bad one
    (``resources.gpus``)."""
    unknown = set(data) - set(RESOURCE_KEYS)
    if unknown:
        raise DefinitionError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))} "
                              f"(known: {', '.join(RESOURCE_KEYS)})")
    parsed: dict[str, Any] = {}
    if "cpus" in data:
        cpus = data["cpus"]
        # bool is an int to Python; `true` is never meant as a count.
        if (isinstance(cpus, bool) or not isinstance(cpus, int | float)
                or not math.isfinite(cpus) or cpus <= 0):
            raise DefinitionError(f"{where}.cpus: must be a positive number")
        parsed["cpus"] = cpus
    if "memory" in data:
        parsed["memory_mb"] = parse_memory(data["memory"], f"{where}.memory")
    if "gpus" in data:
        gpus = data["gpus"]
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise DefinitionError(f"{where}.gpus: must be a whole number, 0 or more")
        parsed["gpus"] = gpus
    if "time_limit" in data:
        parsed["time_limit_s"] = parse_duration(data["time_limit"], f"{where}.time_limit")
    return parsed


def resources_over(asked: Mapping[str, Any], limits: Mapping[str, Any]) -> dict[str, str]:
    """Each resource of ``asked`` past its limit in ``limits`` (both as the job spec carries
    them): the resource as a file names it -> "<asked> is more than <limit>"."""
    over = {}
    for name, key in RESOURCE_KEYS.items():
        if key in asked and key in limits and asked[key] > limits[key]:
            over[name] = f"{asked[key]} is more than {limits[key]}"
    return over


def pipeline_over_pool(resources: Mapping[str, Any], pool: Any) -> list[str]:
    """Why a pipeline asking ``resources`` cannot run on ``pool`` (a Pool or PoolDefinition):
    more of a resource than the pool's ``max_resources``, or more GPUs than it has."""
    problems = [f"resources.{name}: {text} (pool {pool.name}'s max_resources.{name})"
                for name, text in resources_over(resources, pool.max_resources).items()]
    gpus = resources.get("gpus", 0)
    if pool.gpu_devices and gpus > len(pool.gpu_devices) and "gpus" not in pool.max_resources:
        problems.append(f"resources.gpus: {gpus} is more than pool {pool.name}'s "
                        f"{len(pool.gpu_devices)} GPUs")
    return problems


def parse_memory(value: Any, field: str = "resources.memory") -> int:
    """``512`` (MB), ``"256M"``, ``"2G"``, ``"1Gi"`` -> megabytes."""
    # Digits bounded: float() of 400 digits is inf, and int() refuses over 4300 of them.
    match = re.fullmatch(r"\s*(\d{1,15}(?:\.\d{1,6})?)\s*([a-zA-Z]*)\s*", str(value))
    unit = match and match.group(2).lower()
    if isinstance(value, bool) or not match or unit not in MEMORY_UNITS_MB:
        raise DefinitionError(f"{field}: cannot read {value!r} (use 512M or 2G)")
    return max(1, int(float(match.group(1)) * MEMORY_UNITS_MB[unit]))


def parse_duration(value: Any, field: str) -> int:
    """``90`` (seconds), ``"30s"``, ``"10m"``, ``"2h"``, ``"1d"`` -> seconds."""
    match = re.fullmatch(r"\s*(\d{1,12})\s*([a-z]*)\s*", str(value))
    if not match or match.group(2) not in DURATION_UNITS_S or int(match.group(1)) <= 0:
        raise DefinitionError(f"{field}: cannot read {value!r} (use 90, 30s, 10m or 2h)")
    return int(match.group(1)) * DURATION_UNITS_S[match.group(2)]


def sbatch_over_pool(definition: Any, pool: Any) -> list[str]:
    """Why a pipeline's ``sbatch`` options and ``allow.sbatch`` (a PipelineDefinition) do not
    fit ``pool``'s ``allow_sbatch`` (a Pool or PoolDefinition)."""
    problems = outside_allowed(definition.sbatch or {}, pool.allow_sbatch, "sbatch", pool.name)
    asked = (definition.allow or {}).get("sbatch")
    unlisted = [] if asked in (None, True, False) else sorted(set(asked) - set(pool.allow_sbatch))
    if unlisted:
        problems.append(f"allow.sbatch: pool {pool.name}'s allow_sbatch lets no run set "
                        f"{', '.join(unlisted)}")
    return problems
