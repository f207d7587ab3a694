"""The batch script of a Slurm job, what Slurm is told about it, its environment and its secrets.

- **The batch script**, generated from the run spec and the pool's settings. Only validated
  values (numbers, the process id, the work dir, the pool's partition, account and qos) and the
  pipeline's own command, quoted, reach it; ``used_config`` never does.
- **Secrets** never go into the environment given to sbatch or slurmrestd: slurmctld saves that
  with the job (in its state directory, for as long as it keeps the job). The worker opens them
  into ``secrets.env``, which the batch script reads into its environment at its start and
  removes when it ends.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import sbatch_options
from ...contract import JobSpec
from ..base import ExecutorError
from .settings import setting

SETTING_VALUE = re.compile(r"[A-Za-z0-9_.,:@+=-]{1,200}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SECRETS_FILE = "secrets.env"


@dataclass
class JobOptions:
    """What Slurm is told about one job, validated: safe in an #SBATCH line or a JSON field."""

    name: str
    work_dir: Path
    cpus: int
    memory_mb: int
    gpus: int
    time_min: int | None
    partition: str | None
    account: str | None
    qos: str | None
    # The sbatch options beyond these (``sbatch_options``, parsed): passed on by the target,
    # as sbatch's argv or slurmrestd's fields, never as #SBATCH lines.
    sbatch: dict[str, Any] = field(default_factory=dict)

    @property
    def output(self) -> Path:
        return self.work_dir / "output.log"

    def directives(self) -> list[str]:
        opts = [
            f"--job-name={self.name}", f"--chdir={self.work_dir}",
            f"--output={self.output}", f"--error={self.output}",
            f"--cpus-per-task={self.cpus}", f"--mem={self.memory_mb}M",
        ]
        if self.gpus:
            opts.append(f"--gres=gpu:{self.gpus}")
        if self.time_min:
            opts.append(f"--time={self.time_min}")
        for key in ("partition", "account", "qos"):
            if value := getattr(self, key):
                opts.append(f"--{key}={value}")
        return opts


def job_options(spec: JobSpec, settings: dict, work_dir: Path) -> JobOptions:
    res = spec.resources
    picked = {}
    for key in ("partition", "account", "qos"):
        value = setting(settings, key, f"ORCH_SLURM_{key.upper()}")
        if value is not None and not SETTING_VALUE.fullmatch(str(value)):
            raise ExecutorError(f"pool setting {key}={value!r} is not a Slurm name", permanent=True)
        picked[key] = str(value) if value is not None else None
    try:
        sbatch = sbatch_options.parse(spec.sbatch)
    except sbatch_options.OptionError as exc:
        raise ExecutorError(f"job spec {exc}", permanent=True) from None
    return JobOptions(
        name=spec.job_name, work_dir=work_dir,
        cpus=max(1, math.ceil(res.cpus or 1)), memory_mb=max(1, int(res.memory_mb or 1)),
        gpus=max(0, int(res.gpus or 0)),
        time_min=math.ceil(res.time_limit_s / 60) if res.time_limit_s else None,
        sbatch=sbatch, **picked,
    )


def job_command(spec: JobSpec, work_dir: Path) -> str:
    """The line of the batch script that runs the pipeline: its own argv, each word quoted.
    ``submit`` has refused what no Slurm job may ask (``contract.job_refusals``): an image,
    or neither a command nor a script."""
    if spec.script:
        script = shlex.quote(str(work_dir / "script"))
        return script if spec.script.startswith("#!") else f"/bin/sh {script}"
    return " ".join(shlex.quote(str(word)) for word in spec.command)


def batch_script(spec: JobSpec, options: JobOptions) -> str:
    # The run dir's files by their whole path: the job may start elsewhere (sbatch.chdir).
    def file(name: str) -> str:
        return shlex.quote(str(options.work_dir / name))  # a checked work dir: no $, ` or "

    lines = [
        "#!/bin/sh",
        *(f"#SBATCH {opt}" for opt in options.directives()),
        "# Written by orchestration. The user's config is data: config.json, by path in",
        "# ORCH_CONFIG_FILE. exit_code is written last, when the command has returned.",
        *(secrets_lines(options.work_dir / SECRETS_FILE) if spec.secret_env else []),
        f'echo "$SLURM_JOB_ID" > {file("slurm_job_id")}',
        f"rm -f {file('exit_code')}",
        job_command(spec, options.work_dir),
        "code=$?",
        f'echo "$code" > {file("exit_code.tmp")} && mv -f {file("exit_code.tmp")} '
        f'{file("exit_code")}',
        'exit "$code"',
    ]
    return "\n".join(lines) + "\n"


def secrets_lines(path: Path) -> list[str]:
    """Lines of the batch script that read the secrets file into the environment and remove
    it when the script ends, also when Slurm stops the job (scancel, time limit: SIGTERM)."""
    quoted = shlex.quote(str(path))  # a checked work dir: no $, ` or " in it
    return [
        "# Secrets: from a 0600 file the worker wrote, never from Slurm's saved environment.",
        f'trap "rm -f {quoted}" EXIT',
        "trap 'exit 143' TERM; trap 'exit 129' HUP; trap 'exit 130' INT",
        f". {quoted}",
    ]


def secrets_file_text(values: dict[str, str]) -> str:
    """The secrets file: one ``export NAME='value'`` per secret, each value quoted for sh."""
    lines = []
    for name, value in sorted(values.items()):
        if name.startswith(("SBATCH_", "SLURM_")) or not ENV_NAME.fullmatch(name):
            raise ExecutorError(f"secret {name!r} is reserved for Slurm or not a name",
                                permanent=True)
        lines.append(f"export {name}={shlex.quote(str(value))}")
    return "\n".join(lines) + "\n"


def job_env(spec: JobSpec, work_dir: Path, base: dict[str, str]) -> dict[str, str]:
    """The job's environment: ``base``, the pipeline's env, and where its files are."""
    for key in spec.env:
        if key.startswith(("SBATCH_", "SLURM_")) or not ENV_NAME.fullmatch(key):
            raise ExecutorError(f"env {key!r} is reserved for Slurm or not a name", permanent=True)
    env = dict(base)
    env.update({key: str(value) for key, value in spec.env.items()})
    env.update(
        ORCH_PROCESS_ID=spec.process_id,
        ORCH_WORK_DIR=str(work_dir),
        ORCH_CONFIG_FILE=str(work_dir / "config.json"),
    )
    if spec.inputs:
        env["ORCH_INPUT_DIR"] = str(work_dir / "inputs")
    if spec.outputs:
        env["ORCH_OUTPUT_DIR"] = str(work_dir / "outputs")
    return env
