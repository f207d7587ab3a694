"""Reading and checking pipeline and pool files: YAML in, plain checked dicts out, or an
error that names the file and the reason. No database here (see services.py)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from workers.contract import TARGETS, job_refusals
from workers.pool_settings import settings_errors

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MEMORY_UNITS_MB = {"": 1, "m": 1, "mb": 1, "mi": 1, "mib": 1, "g": 1024, "gb": 1024,
                   "gi": 1024, "gib": 1024, "k": 1 / 1024, "kb": 1 / 1024, "ki": 1 / 1024}
DURATION_UNITS_S = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
DEFAULT_RESOURCES = {"cpus": 1, "memory_mb": 512, "gpus": 0, "time_limit_s": 3600}


class DefinitionError(ValueError):
    """A file that cannot be loaded; the message says why."""


@dataclass
class PoolDefinition:
    name: str
    target: str
    capacity: int
    settings: dict[str, Any]
    queued_limit_s: int
    source_file: str


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

    @property
    def digest(self) -> str:
        # Fields left empty do not count, so adding an optional field later does not turn every
        # unchanged file into a new version.
        content = {k: v for k, v in vars(self).items() if k != "source_file" and v != []}
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
    return PoolDefinition(name, target, capacity, settings, queued_limit, path.name)


def parse_pipeline(path: Path) -> PipelineDefinition:
    data = read_yaml(path)
    unknown = set(data) - {"name", "version", "description", "target", "pool", "run",
                           "resources", "config_schema", "defaults", "secrets"}
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
    errors = config_errors(schema, defaults)
    if errors:
        raise DefinitionError(f"defaults do not match config_schema: {errors[0]}")
    run = _run(data.get("run"))
    # Refused here, when the file loads, rather than by a worker when a run of it starts.
    refusals = job_refusals(target, image=run["image"], script=run["script"],
                            command=run["command"])
    if refusals:
        raise DefinitionError(f"run: {'; '.join(refusals)}")
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
        secrets=_secrets(data.get("secrets")),
        source_file=path.name,
    )


def config_errors(schema: dict[str, Any], config: Any) -> list[str]:
    """Every way ``config`` breaks ``schema``, each naming its place (``used_config.seconds``)."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    found = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    return [
        f"{'.'.join(['used_config', *map(str, e.absolute_path)])}: {e.message}" for e in found
    ]


def parse_resources(data: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise DefinitionError("resources: must be a mapping")
    unknown = set(data) - {"cpus", "memory", "gpus", "time_limit"}
    if unknown:
        raise DefinitionError(f"resources: unknown keys {', '.join(sorted(unknown))}")
    cpus = data.get("cpus", DEFAULT_RESOURCES["cpus"])
    gpus = data.get("gpus", DEFAULT_RESOURCES["gpus"])
    if not isinstance(cpus, int | float) or cpus <= 0:
        raise DefinitionError("resources.cpus: must be a positive number")
    if not isinstance(gpus, int) or gpus < 0:
        raise DefinitionError("resources.gpus: must be a whole number, 0 or more")
    return {
        "cpus": cpus,
        "memory_mb": parse_memory(data.get("memory", DEFAULT_RESOURCES["memory_mb"])),
        "gpus": gpus,
        "time_limit_s": parse_duration(
            data.get("time_limit", DEFAULT_RESOURCES["time_limit_s"]), "resources.time_limit"
        ),
    }


def parse_memory(value: Any) -> int:
    """``512`` (MB), ``"256M"``, ``"2G"``, ``"1Gi"`` -> megabytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    unit = match and match.group(2).lower()
    if not match or unit not in MEMORY_UNITS_MB:
        raise DefinitionError(f"resources.memory: cannot read {value!r} (use 512M or 2G)")
    return max(1, int(float(match.group(1)) * MEMORY_UNITS_MB[unit]))


def parse_duration(value: Any, field: str) -> int:
    """``90`` (seconds), ``"30s"``, ``"10m"``, ``"2h"``, ``"1d"`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-z]*)\s*", str(value))
    if not match or match.group(2) not in DURATION_UNITS_S or int(match.group(1)) <= 0:
        raise DefinitionError(f"{field}: cannot read {value!r} (use 90, 30s, 10m or 2h)")
    return int(match.group(1)) * DURATION_UNITS_S[match.group(2)]


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
