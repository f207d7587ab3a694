"""A Docker run's dir ``<work_root>/<process id>`` on the host, next to the engine (a retry's
``<process id>-a<N>``: ``workdirs.run_key``).

- ``config.json``: the user's config, which the container mounts read-only, each dataset field
  holding its file's path in the container; ``script``, the same, when the pipeline has one;
  ``work/``, mounted read-write (the job's working dir);
- ``inputs/``: the datasets, staged read-only (``workers.staging``), mounted read-only;
  ``outputs/``, the container user's, mounted read-write, and ``outputs.json``, where a poll
  that sees the job end stores them (``workers.outputs``);
- ``container`` (the container id), ``cancelled`` and ``timed_out``: markers the container
  cannot see, which outlive ``release()`` so a late duplicate job spec starts nothing and a
  stopped or timed-out container is reported as such.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ... import outputs, staging
from ...contract import JobSpec
from .. import workdirs
from .confinement import give_work_dir

INPUTS_DIR, OUTPUTS_DIR, OUTPUTS_SPEC = "inputs", "outputs", "outputs.json"
# Where the container sees them.
INPUTS_PATH, OUTPUTS_PATH = "/orch/inputs", "/orch/outputs"

# Run-dir files the container cannot see; they outlive release().
TOMBSTONE = {"container", "cancelled", "timed_out", OUTPUTS_SPEC}
# The files the container mounts: its user, whoever that is, reads them.
MOUNTED_FILE_MODE = 0o644


class RunDirs:
    """The run dirs under the pool setting ``work_root`` (``ORCH_WORK_ROOT`` or ``var/work``;
    a path the engine can bind-mount)."""

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings

    @property
    def work_root(self) -> Path:
        return Path(self.settings.get("work_root") or workdirs.default_work_root()).absolute()

    def of(self, process_id: str, attempt: int = 1) -> Path:
        return workdirs.run_dir_of(self.work_root, workdirs.run_key(process_id, attempt))

    def prepare(self, spec: JobSpec, user: str) -> Path:
        """The run dir of ``spec`` with its config (and script) written and its work dir given
        to ``user``, the container's."""
        run_dir = self.of(spec.process_id, spec.attempt)
        work = run_dir / "work"
        work.mkdir(parents=True, exist_ok=True)
        # The run dir (markers, config) is the worker's alone; only the work dir is the job's.
        run_dir.chmod(0o700)
        give_work_dir(work, user)
        # A container of the worker's own uid could chmod a linked store file: a copy then.
        staging.stage_inputs(spec, run_dir / INPUTS_DIR,
                             link=int(user.split(":")[0]) != os.geteuid())
        if spec.outputs:
            (run_dir / OUTPUTS_DIR).mkdir(exist_ok=True)
            give_work_dir(run_dir / OUTPUTS_DIR, user)
            outputs.save_spec(run_dir / OUTPUTS_SPEC, spec.outputs)
        config = staging.config_for_job(spec, INPUTS_PATH)
        # Replaced whole: a container that mounted the old file keeps reading it.
        workdirs.write_atomic(run_dir / "config.json", json.dumps(config), MOUNTED_FILE_MODE)
        if spec.script:
            workdirs.write_atomic(run_dir / "script", spec.script, MOUNTED_FILE_MODE)
        return run_dir

    def clean(self, process_id: str, attempt: int = 1) -> None:
        """Remove a finished run's files but the markers, unless the pool keeps them
        (``keep_work_dir``)."""
        if workdirs.keep_work_dir(self.settings):
            return
        outputs.mark_released(self.of(process_id, attempt) / OUTPUTS_SPEC)
        workdirs.clean_run_dir(self.of(process_id, attempt), TOMBSTONE)
