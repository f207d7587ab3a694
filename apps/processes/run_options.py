"""What a run may choose beyond its config: its resources within its pool's
``max_resources``, and, where its pipeline's ``allow`` says so, an image its pool's
``images`` match, plain env values and sbatch options within its pool's ``allow_sbatch``.
Each refusal names its place (``resources.gpus``, ``image``, ``env.SEED``,
``sbatch.constraint``); nothing here writes."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from apps.pipelines.definitions import IMAGE_RE, env_name_problem
from apps.pipelines.errors import DefinitionError
from apps.pipelines.models import PipelineVersion
from apps.pipelines.resources import RESOURCE_KEYS, resource_values
from apps.processes.input_limits import text_problems
from workers import sbatch_options
from workers.contract import TARGET_FACTS

# Env values a run may give at most: names, bytes of one value, bytes of them all (UTF-8).
ENV_MAX_NAMES = 64
ENV_VALUE_MAX_BYTES = 8 * 1024
ENV_MAX_BYTES = 64 * 1024


def resources_of(version: PipelineVersion, asked: dict[str, Any]) -> dict[str, Any]:
    """The resources a run gets: those it asked (as ``resource_errors`` parsed them) over its
    pipeline version's own."""
    return {**version.resources, **asked}


def as_request(asked: dict[str, Any]) -> dict[str, Any]:
    """Resources a run asked, as a POST names them again (a re-run's request): memory in MB
    and the time limit in seconds read back as they were."""
    return {name: asked[key] for name, key in RESOURCE_KEYS.items() if key in asked}


def resources_asked(resources: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A POST's ``resources`` ({cpus, memory, gpus, time_limit}) as a job spec carries them
    ({cpus, memory_mb, gpus, time_limit_s}), or the reasons it cannot be read."""
    parsed: dict[str, Any] = {}
    errors: list[str] = []
    unknown = sorted(set(resources) - set(RESOURCE_KEYS))
    errors += [f"resources.{name}: unknown; a run may ask {', '.join(RESOURCE_KEYS)}."
               for name in unknown]
    for name in RESOURCE_KEYS:
        if name not in resources:
            continue
        try:
            parsed.update(resource_values({name: resources[name]}, "resources"))
        except DefinitionError as exc:
            errors.append(f"{exc}.")
    return parsed, errors


def resource_errors(version: PipelineVersion, asked: dict[str, Any]) -> list[str]:
    """Each resource ``asked`` (parsed) past what its pool allows: the pool's
    ``max_resources``, else its pipeline's own (a run may ask less, never more, of a
    resource its pool sets no maximum for); more GPUs than a pool that counts them has."""
    pool, own = version.pool, version.resources
    errors = []
    for name, key in RESOURCE_KEYS.items():
        if key not in asked:
            continue
        value = asked[key]
        if key in pool.max_resources:
            if value > pool.max_resources[key]:
                errors.append(f"resources.{name}: {value} is more than pool {pool.name} allows "
                              f"(max_resources.{name}: {pool.max_resources[key]}).")
        elif value > own.get(key, 0):
            errors.append(f"resources.{name}: {value} is more than pipeline "
                          f"{version.pipeline.name} asks ({own.get(key, 0)}), and pool "
                          f"{pool.name} sets no max_resources.{name}.")
    gpus = resources_of(version, asked).get("gpus", 0)
    if not errors and pool.gpu_devices and gpus > len(pool.gpu_devices):  # it would never go
        errors.append(f"resources.gpus: {gpus} is more than pool {pool.name}'s "
                      f"{len(pool.gpu_devices)} GPUs.")
    return errors


def image_errors(version: PipelineVersion, image: str) -> list[str]:
    """Why a run of ``version`` may not run in ``image`` ([] when it may, or names none)."""
    if not image:
        return []
    name, pool = version.pipeline.name, version.pool
    if not TARGET_FACTS[version.target].runs_image:
        return [f"image: pipeline {name} runs on the {version.target} target, which runs no "
                "image."]
    if not version.allow.get("image"):
        return [f"image: pipeline {name} does not let a run choose its image (allow.image "
                "in its file)."]
    if not IMAGE_RE.match(image):
        return ["image: not an image reference such as registry/name:tag."]
    if not any(fnmatchcase(image, pattern) for pattern in pool.images):
        allowed = ", ".join(pool.images) or "none"
        return [f"image: {image!r} is not one of the images pool {pool.name} allows "
                f"({allowed})."]
    return []


def env_errors(version: PipelineVersion, env: dict[str, Any]) -> list[str]:
    """Every way ``env`` breaks what its pipeline allows, each naming its place
    (``env.SEED``): names it does not allow, reserved (ORCH_*) or secret names, values that
    are not strings or past the bounds."""
    if not env:
        return []
    allowed = version.allow.get("env")
    if not allowed:
        return [f"env: pipeline {version.pipeline.name} does not let a run set env values "
                "(allow.env in its file)."]
    if len(env) > ENV_MAX_NAMES:
        return [f"env: {len(env)} values; the limit is {ENV_MAX_NAMES}."]
    errors = []
    total = 0
    for name, value in sorted(env.items()):
        where = f"env.{name}"
        if problem := env_name_problem(name, version.secrets):
            errors.append(f"{where}: {problem}.")
        elif allowed is not True and name not in allowed:
            errors.append(f"{where}: not allowed by pipeline {version.pipeline.name}; it "
                          f"allows {', '.join(allowed)}.")
        elif not isinstance(value, str):
            errors.append(f"{where}: must be a string, not {type(value).__name__}.")
        elif len(value.encode()) > ENV_VALUE_MAX_BYTES:
            errors.append(f"{where}: longer than {ENV_VALUE_MAX_BYTES} bytes.")
        else:
            errors.extend(text_problems(value, where))
            total += len(name) + len(value.encode())
    if not errors and total > ENV_MAX_BYTES:
        errors.append(f"env: {total} bytes in all; the limit is {ENV_MAX_BYTES}.")
    return errors


def sbatch_of(version: PipelineVersion, asked: dict[str, Any]) -> dict[str, Any]:
    """The sbatch options a run's job gets: its pool's defaults, then its pipeline version's,
    then those it asked (each replaces an option, never merges into it)."""
    return {**version.pool.sbatch, **version.sbatch, **asked}


def sbatch_asked(sbatch: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A POST's ``sbatch`` options, read as a job spec carries them (``"END,FAIL"`` ->
    ``["END", "FAIL"]``), or why they cannot be read."""
    try:
        return sbatch_options.parse(sbatch), []
    except sbatch_options.OptionError as exc:
        return {}, [f"{exc}."]


def sbatch_errors(version: PipelineVersion, asked: dict[str, Any]) -> list[str]:
    """Each sbatch option ``asked`` (read) that its pipeline's ``allow.sbatch`` does not name,
    or whose value its pool's ``allow_sbatch`` does not let through."""
    if not asked:
        return []
    name, pool = version.pipeline.name, version.pool
    allowed = version.allow.get("sbatch")
    if not allowed:
        return [f"sbatch: pipeline {name} does not let a run set sbatch options (allow.sbatch "
                "in its file)."]
    errors = [f"sbatch.{option}: not allowed by pipeline {name}; it allows "
              f"{', '.join(allowed)}." for option in asked
              if allowed is not True and option not in allowed]
    errors += [f"{problem}." for problem in sbatch_options.outside_allowed(
        {k: v for k, v in asked.items() if allowed is True or k in allowed},
        pool.allow_sbatch, "sbatch", pool.name)]
    return errors
