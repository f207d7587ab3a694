"""The handle of a Slurm job, as the control plane stores it: ``<job id>:<job name>:<submit
epoch>``. The name (``orch-<process id>``) guards against ids Slurm gives out again after a cold
start; the submit time bounds the accounting query."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A process id that can name a Slurm job and a run dir: no character a path or an #SBATCH line
# would read as anything but a name.
PROCESS_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class Handle:
    job_id: str
    name: str
    submitted: int

    def __str__(self) -> str:
        return f"{self.job_id}:{self.name}:{self.submitted}"

    @property
    def process_id(self) -> str:
        """The name of the job's run dir: the process id, ``<id>-a<N>`` for a retry's job
        (``workdirs.run_key``)."""
        return self.name.removeprefix("orch-")

    @classmethod
    def parse(cls, text: str) -> Handle | None:
        """The handle in ``text``, or None when it is not one of ours."""
        job_id, _, rest = (text or "").strip().partition(":")
        name, _, submitted = rest.partition(":")
        process_id = name.removeprefix("orch-")
        if not (job_id.isdigit() and name.startswith("orch-") and submitted.isdigit()):
            return None
        if not PROCESS_ID.fullmatch(process_id):
            return None
        return cls(job_id, name, int(submitted))
