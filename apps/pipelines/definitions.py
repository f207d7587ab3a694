"""Reading and checking pipeline and pool files: YAML in, plain checked dicts out, or an
error that names the file and the reason. No database here (see services.py)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from apps.datasets.config_fields import with_dataset_placeholders
from apps.pipelines.errors import DefinitionError
from apps.pipelines.pool_shares import pool_quotas, pool_teams, pool_weights
from apps.pipelines.resources import (
    parse_duration,
    parse_resources,
    resource_values,
)
from apps.pipelines.retries import parse_retry
from workers import sbatch_options
from workers.contract import CLUSTER_TARGETS, TARGET_FACTS, TARGETS, job_refusals
from workers.pool_settings import settings_errors

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
POOL_KEYS = frozenset({"name", "target", "capacity", "queued_limit", "settings", "teams",
                       "quotas", "weights", "host_lost_after", "max_resources", "images",
                       "gpus", "sbatch", "allow_sbatch"})
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
# An image reference: [registry[:port]/]name[:tag][@digest], no space, no control character.
IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,499}$")
# A device id as nvidia-smi shows it: an index, a GPU-/MIG- UUID.
GPU_DEVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,99}$")
# Env names no run chooses: the product's own (ORCH_CONFIG_FILE, ...).
RESERVED_ENV_PREFIX = "ORCH_"


@dataclass
class PoolDefinition:
    name: str
    target: str
    capacity: int
    settings: dict[str, Any]
    queued_limit_s: int
    source_file: str
    # Who may use the pool and how much (apps.processes.admission): None is every team.
    teams: list[str] | None = None
    quotas: dict[str, dict[str, int]] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    # A host-bound pool's host silent this long has its processes ended LOST.
    host_lost_after_s: int = 600
    # What a run may ask here (apps.processes.run_options): the most of each resource, the
    # images it may name (globs), and the GPU devices admission hands out (docker pools).
    max_resources: dict[str, Any] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    gpu_devices: list[str] = field(default_factory=list)
    # Slurm pools: the sbatch options every job gets unless its pipeline or run sets them, and
    # what a pipeline or run may set (workers.sbatch_options).
    sbatch: dict[str, Any] = field(default_factory=dict)
    allow_sbatch: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineDefinition:
    name: str
    label: str
    description: str
    target: str
    pool: str
    run: dict[str, Any]
    resources: dict[str, Any]
    config_schema: dict[str, Any]
    defaults: dict[str, Any]
    secrets: list[str]
    source_file: str
    # ``retry:`` as parse_retry reads it; None: a run is never retried.
    retry: dict[str, Any] | None = None
    # What a run may choose beyond its config: ``{"image": True, "env": [NAME, ...] or True,
    # "sbatch": [OPTION, ...] or True}``.
    allow: dict[str, Any] | None = None
    # ``sbatch:`` options of a Slurm pipeline, within its pool's ``allow_sbatch``; None when
    # absent (the digest of a file without it does not change).
    sbatch: dict[str, Any] | None = None

    @property
    def digest(self) -> str:
        # Fields left empty do not count, so adding an optional field later does not turn every
        # unchanged file into a new version.
        content = {k: v for k, v in vars(self).items()
                   if k != "source_file" and v != [] and v is not None}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DefinitionError(f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise DefinitionError("the file must hold a mapping (name: ..., target: ...)")
    return data


def parse_pool(path: Path) -> PoolDefinition:
    data = read_yaml(path)
    unknown = set(data) - POOL_KEYS
    if unknown:  # a mistyped "quota:" must not leave a pool quietly unlimited
        raise DefinitionError(f"unknown keys: {', '.join(sorted(unknown))}")
    name = _name(data, path)
    target = _target(data)
    capacity = data.get("capacity", 4)
    if not isinstance(capacity, int) or capacity < 1:
        raise DefinitionError("capacity: must be a whole number of at least 1")
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise DefinitionError("settings: must be a mapping")
    # Workers follow these settings (where the engine, slurmrestd or AWS endpoint is), so only
    # the settings the target reads, with the right types, get into the database.
    errors = settings_errors(target, settings)
    if errors:
        raise DefinitionError("; ".join(errors))
    queued_limit = parse_duration(data.get("queued_limit", 600), "queued_limit")
    teams = pool_teams(data.get("teams"))
    gpu_devices = _pool_gpus(data.get("gpus"), target)
    max_resources = _pool_max_resources(data.get("max_resources"), gpu_devices)
    return PoolDefinition(name, target, capacity, settings, queued_limit, path.name,
                          teams=teams, quotas=pool_quotas(data.get("quotas"), teams),
                          weights=pool_weights(data.get("weights"), teams),
                          host_lost_after_s=parse_duration(data.get("host_lost_after", 600),
                                                           "host_lost_after"),
                          max_resources=max_resources,
                          images=_pool_images(data.get("images"), target),
                          gpu_devices=gpu_devices,
                          sbatch=_sbatch(data.get("sbatch"), target, "sbatch"),
                          allow_sbatch=_sbatch(data.get("allow_sbatch"), target, "allow_sbatch"))


def _sbatch(values: Any, target: str, key: str) -> dict[str, Any]:
    """A pool's ``sbatch`` (defaults) or ``allow_sbatch`` (what pipelines and runs may set),
    or a pipeline's ``sbatch``: checked by the worker's own rules, named by option."""
    if values is None:
        return {}
    if target not in CLUSTER_TARGETS:  # only Slurm's take sbatch options
        raise DefinitionError(f"{key}: only the Slurm targets take sbatch options, not {target}")
    read = sbatch_options.parse_allowed if key == "allow_sbatch" else sbatch_options.parse
    try:
        return read(values, key)
    except sbatch_options.OptionError as exc:
        raise DefinitionError(str(exc)) from None


def _pool_max_resources(limits: Any, gpu_devices: list[str]) -> dict[str, Any]:
    """``max_resources: {cpus: 8, memory: 32G, gpus: 2, time_limit: 1d}``: the most a run may
    ask of each (a resource left out: no run asks more than its pipeline's own)."""
    if limits is None:
        return {}
    if not isinstance(limits, dict):
        raise DefinitionError("max_resources: must be a mapping of cpus, memory, gpus, "
                              "time_limit")
    parsed = resource_values(limits, "max_resources")
    if gpu_devices and parsed.get("gpus", 0) > len(gpu_devices):
        raise DefinitionError(f"max_resources.gpus: {parsed['gpus']} is more than the pool's "
                              f"{len(gpu_devices)} GPUs")
    return parsed


def _pool_images(patterns: Any, target: str) -> list[str]:
    """``images: ["localhost/orch-*:*"]``: the images a run of the pool may name, as fnmatch
    globs (``*`` matches any characters, ``/`` too); absent: a run names none."""
    if patterns is None:
        return []
    if not isinstance(patterns, list) or not patterns or not all(
            isinstance(p, str) and IMAGE_RE.match(p.replace("*", "x").replace("?", "x"))
            for p in patterns):
        raise DefinitionError("images: must be a list of image patterns such as "
                              "\"localhost/orch-*:*\"")
    if not TARGET_FACTS[target].runs_image:
        raise DefinitionError(f"images: the {target} target runs no images")
    return list(dict.fromkeys(patterns))


def _pool_gpus(gpus: Any, target: str) -> list[str]:
    """``gpus: 2`` (devices 0 and 1) or ``gpus: ["0", "GPU-5f3c..."]``: the devices admission
    hands out one job at a time. Only a docker pool counts them: its worker gives each
    container exactly its devices (Slurm and ECS place GPUs themselves)."""
    if gpus is None:
        return []
    if target != "docker":
        raise DefinitionError(f"gpus: only docker pools count GPUs, not {target} (a job's "
                              "resources.gpus still asks its target for them)")
    if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus >= 1:
        return [str(n) for n in range(gpus)]
    if isinstance(gpus, list) and gpus and all(
            isinstance(d, str | int) and not isinstance(d, bool) and GPU_DEVICE_RE.match(str(d))
            for d in gpus) and len({str(d) for d in gpus}) == len(gpus):
        return [str(d) for d in gpus]
    raise DefinitionError("gpus: must be a number of at least 1 or a list of distinct device "
                          "ids such as [\"0\", \"1\"]")


def parse_pipeline(path: Path) -> PipelineDefinition:
    data = read_yaml(path)
    unknown = set(data) - {"name", "version", "description", "target", "pool", "run",
                           "resources", "config_schema", "defaults", "secrets", "retry",
                           "allow", "sbatch"}
    if unknown:
        raise DefinitionError(f"unknown keys: {', '.join(sorted(unknown))}")
    name = _name(data, path)
    target = _target(data)
    pool = data.get("pool")
    if not isinstance(pool, str) or not pool:
        raise DefinitionError("pool: required, the name of a pool in pipelines/pools/")
    schema = data.get("config_schema") or {"type": "object"}
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise DefinitionError("defaults: must be a mapping")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise DefinitionError(f"config_schema: not a valid JSON Schema: {exc.message}") from None
    errors = config_errors(schema, with_dataset_placeholders(schema, defaults))
    if errors:
        raise DefinitionError(f"defaults do not match config_schema: {errors[0]}")
    run = _run(data.get("run"))
    # Refused here, when the file loads, rather than by a worker when a run of it starts.
    refusals = job_refusals(target, image=run["image"], script=run["script"],
                            command=run["command"])
    if refusals:
        raise DefinitionError(f"run: {'; '.join(refusals)}")
    secrets = _secrets(data.get("secrets"))
    return PipelineDefinition(
        name=name,
        label=str(data.get("version", "")),
        description=str(data.get("description", "")).strip(),
        target=target,
        pool=pool,
        run=run,
        resources=parse_resources(data.get("resources") or {}),
        config_schema=schema,
        defaults=defaults,
        secrets=secrets,
        source_file=path.name,
        retry=parse_retry(data.get("retry")),
        allow=_allow(data.get("allow"), target, secrets),
        sbatch=_sbatch(data["sbatch"], target, "sbatch") if "sbatch" in data else None,
    )


def _allow(allow: Any, target: str, secrets: list[str]) -> dict[str, Any] | None:
    """``allow: {image: true, env: [EPOCHS, SEED]}``: what a run may choose beyond its config,
    an image (of those its pool's ``images`` allow) and env values (of these names, or any
    name with ``env: true``). Absent: neither."""
    if allow is None:
        return None
    if not isinstance(allow, dict) or set(allow) - {"image", "env", "sbatch"}:
        raise DefinitionError("allow: must be a mapping with image: true, env: [NAME, ...] "
                              "(or env: true) and sbatch: [OPTION, ...] (or sbatch: true)")
    parsed: dict[str, Any] = {}
    if "image" in allow:
        if not isinstance(allow["image"], bool):
            raise DefinitionError("allow.image: must be true or false")
        if allow["image"] and not TARGET_FACTS[target].runs_image:
            raise DefinitionError(f"allow.image: the {target} target runs no images")
        parsed["image"] = allow["image"]
    if "env" in allow:
        parsed["env"] = _allow_env(allow["env"], secrets)
    if "sbatch" in allow:
        parsed["sbatch"] = _allow_sbatch(allow["sbatch"], target)
    return parsed


def _allow_sbatch(names: Any, target: str) -> bool | list[str]:
    """``allow.sbatch``: true (every option the pool's allow_sbatch lists) or the options a
    run may set, each within the pool's allow_sbatch."""
    if target not in CLUSTER_TARGETS:  # only Slurm's take sbatch options
        raise DefinitionError(f"allow.sbatch: only the Slurm targets take sbatch options, not "
                              f"{target}")
    if isinstance(names, bool):
        return names
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DefinitionError("allow.sbatch: must be a list of sbatch options, or true for "
                              "those the pool allows")
    unknown = sorted(set(names) - set(sbatch_options.NAMES))
    if unknown:
        raise DefinitionError(f"allow.sbatch: {', '.join(unknown)} not an sbatch option here "
                              f"(known: {', '.join(sbatch_options.NAMES)})")
    return sorted(set(names))


def _allow_env(env: Any, secrets: list[str]) -> bool | list[str]:
    """``allow.env``: true (any name a run may set) or the names a run may set."""
    if isinstance(env, bool):
        return env
    if not isinstance(env, list) or not env or not all(isinstance(n, str) for n in env):
        raise DefinitionError("allow.env: must be a list of environment variable names, or "
                              "true for any name")
    for name in env:
        if problem := env_name_problem(name, secrets):
            raise DefinitionError(f"allow.env: {name!r} {problem}")
    return sorted(set(env))


def env_name_problem(name: str, secrets: list[str]) -> str | None:
    """Why a run may not set the env value ``name`` (None when it may)."""
    if not ENV_NAME_RE.match(name):
        return "is not an environment variable name (letters, digits and _)"
    if name.upper().startswith(RESERVED_ENV_PREFIX):
        return f"is reserved: {RESERVED_ENV_PREFIX}* names are set by orchestration"
    if name in secrets:
        return "is a secret of the pipeline: give it in secrets"
    return None


def config_errors(schema: dict[str, Any], config: Any) -> list[str]:
    """Every way ``config`` breaks ``schema``, each naming its place (``used_config.seconds``)."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    found = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    return [
        f"{'.'.join(['used_config', *map(str, e.absolute_path)])}: {e.message}" for e in found
    ]


def _name(data: dict[str, Any], path: Path) -> str:
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise DefinitionError("name: required, lower case letters, digits, '-' and '_'")
    if name != path.stem:
        raise DefinitionError(f"name: {name!r} differs from the file name {path.stem!r}")
    return name


def _target(data: dict[str, Any]) -> str:
    target = data.get("target")
    if target not in TARGETS:
        raise DefinitionError(f"target: {target!r} is not one of {', '.join(TARGETS)}")
    return target


def _secrets(names: Any) -> list[str]:
    """Names of the secret env values a run may be given (``secrets: [API_TOKEN]``)."""
    if names is None:
        return []
    if not isinstance(names, list) or not all(
        isinstance(n, str) and ENV_NAME_RE.match(n) for n in names
    ):
        raise DefinitionError("secrets: must be a list of environment variable names")
    return sorted(set(names))


def _run(run: Any) -> dict[str, Any]:
    if not isinstance(run, dict):
        raise DefinitionError("run: required, with a command, an image or a script")
    unknown = set(run) - {"command", "image", "script", "env", "user"}
    if unknown:
        raise DefinitionError(f"run: unknown keys {', '.join(sorted(unknown))}")
    command = run.get("command", [])
    if isinstance(command, str):
        raise DefinitionError("run.command: must be a list of arguments, not a shell string")
    if not isinstance(command, list) or not all(isinstance(a, str | int | float) for a in command):
        raise DefinitionError("run.command: must be a list of arguments")
    if not (command or run.get("image") or run.get("script")):
        raise DefinitionError("run: needs a command, an image or a script")
    env = run.get("env") or {}
    if not isinstance(env, dict):
        raise DefinitionError("run.env: must be a mapping of names to values")
    parsed = {
        "command": [str(a) for a in command],
        "image": str(run.get("image") or ""),
        "script": str(run.get("script") or ""),
        "env": {str(k): str(v) for k, v in env.items()},
    }
    # Only "root", and only where the pool allows it (the docker target checks allow_root).
    # Left out when unset, so the digests of existing definitions do not change.
    if run.get("user") not in (None, ""):
        if run["user"] != "root":
            raise DefinitionError("run.user: only 'root' may be asked for (jobs run as the "
                                  "pool's user otherwise)")
        parsed["user"] = "root"
    return parsed
