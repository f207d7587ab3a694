"""A Docker run's dir ``<work_root>/<process id>`` on the host, next to the engine.

- ``config.json``: the user's config, which the container mounts read-only; ``script``, the
  same, when the pipeline has one; ``work/``, mounted read-write (the job's working dir);
- ``container`` (the container id), ``cancelled`` and ``timed_out``: markers the container
  cannot see, which outlive ``release()`` so a late duplicate job spec starts nothing and a
  stopped or timed-out container is reported as such.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...contract import JobSpec
from .. import workdirs
from .confinement import give_work_dir

# Run-dir files the container cannot see; they outlive release().
TOMBSTONE = {"container", "cancelled", "timed_out"}
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

    def of(self, process_id: str) -> Path:
        return workdirs.run_dir_of(self.work_root, process_id)

    def prepare(self, spec: JobSpec, user: str) -> Path:
        """The run dir of ``spec`` with its config (and script) written and its work dir given
        to ``user``, the container's."""
        run_dir = self.of(spec.process_id)
        work = run_dir / "work"
        work.mkdir(parents=True, exist_ok=True)
        # The run dir (markers, config) is the worker's alone; only the work dir is the job's.
        run_dir.chmod(0o700)
        give_work_dir(work, user)
        # Replaced whole: a container that mounted the old file keeps reading it.
        workdirs.write_atomic(run_dir / "config.json", json.dumps(spec.config),
                              MOUNTED_FILE_MODE)
        if spec.script:
            workdirs.write_atomic(run_dir / "script", spec.script, MOUNTED_FILE_MODE)
        return run_dir

    def clean(self, process_id: str) -> None:
        """Remove a finished run's files but the markers, unless the pool keeps them
        (``keep_work_dir``)."""
        if workdirs.keep_work_dir(self.settings):
            return
        workdirs.clean_run_dir(self.of(process_id), TOMBSTONE)
