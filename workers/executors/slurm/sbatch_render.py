"""How a Slurm target passes a job's sbatch options on (checked by ``workers.sbatch_options``):
each one as one argv element of sbatch (:func:`sbatch_argv`, no shell) or as one field of
slurmrestd's job description (:func:`rest_fields`), never as a line of the batch script."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


def _gres_with_gpus(gres: str, gpus: int) -> str:
    return ",".join(([f"gpu:{gpus}"] if gpus else []) + [gres])


def exported(values: Mapping[str, Any], environ: Mapping[str, str] | None = None
             ) -> dict[str, str]:
    """The environment the ``export`` rules give a job: ``NAME=VALUE`` as written, ``NAME``
    with the submission node's value (``environ``, the worker's own by default; left out when
    it has none)."""
    environ = os.environ if environ is None else environ
    env = {}
    for rule in values.get("export", []):
        name, is_set, value = rule.partition("=")
        if is_set:
            env[name] = value
        elif name in environ:
            env[name] = environ[name]
    return env


# option -> (sbatch's flag, slurmrestd v0.0.38's field): the options passed on as they are.
PLAIN = {
    "constraint": ("--constraint", "constraints"),
    "ntasks": ("--ntasks", "tasks"),
    "cpus_per_task": ("--cpus-per-task", "cpus_per_task"),
    "reservation": ("--reservation", "reservation"),
    "mail_user": ("--mail-user", "mail_user"),
    "chdir": ("--chdir", "current_working_directory"),
}


def sbatch_argv(values: Mapping[str, Any], gpus: int = 0) -> list[str]:
    """sbatch's options for ``values`` (parsed), one argv element each, placed before the
    script (they win over its #SBATCH lines). Always ``--export=ALL[,rules]``: the job gets
    the environment sbatch is given, plus the rules. ``gpus``: the job's ``resources.gpus``,
    kept in ``--gres`` beside the other generic resources."""
    argv = [f"{flag}={values[name]}" for name, (flag, _) in PLAIN.items() if name in values]
    if "nodes" in values:
        argv.append(f"--nodes={values['nodes']}")
    if "gres" in values:
        argv.append(f"--gres={_gres_with_gpus(values['gres'], gpus)}")
    exclusive = values.get("exclusive", False)
    if exclusive is not False:
        argv.append("--exclusive" if exclusive is True else f"--exclusive={exclusive}")
    if "mail_type" in values:
        argv.append(f"--mail-type={','.join(values['mail_type'])}")
    argv.append(",".join(["--export=ALL", *values.get("export", [])]))
    return argv


def rest_fields(values: Mapping[str, Any], gpus: int = 0,
                environment: Mapping[str, str] | None = None) -> dict[str, Any]:
    """slurmrestd's job description fields for ``values`` (parsed), in v0.0.38's names: the
    one place those names are chosen (a table per API version maps them from here).
    ``environment``: the job's environment so far; returned with the ``export`` rules over
    it."""
    job = {field: values[name] for name, (_, field) in PLAIN.items() if name in values}
    if "nodes" in values:
        nodes = values["nodes"]
        low, high = (nodes, nodes) if isinstance(nodes, int) else map(int, nodes.split("-"))
        job["nodes"] = [low, high]
    if "gres" in values:
        job["gres"] = _gres_with_gpus(values["gres"], gpus)
    exclusive = values.get("exclusive", False)
    if exclusive is not False:
        # 22.05's v0.0.38 documents "true" yet refuses it ("Invalid exclusive specification"):
        # it reads sbatch's words, "exclusive" (the whole node), "user" and "mcs".
        job["exclusive"] = "exclusive" if exclusive is True else exclusive
    if "mail_type" in values:
        job["mail_type"] = ",".join(values["mail_type"])
    if environment is not None or "export" in values:
        job["environment"] = {**(environment or {}), **exported(values)}
    return job
