"""The run dir of a Slurm job, and its hand-over to the job's user.

``<work_root>/<process id>/`` (mode 0700) is on a file system the worker and the compute nodes
both see. The worker writes ``config.json`` (the user's config, passed by path in
``ORCH_CONFIG_FILE``, each dataset field holding its file's path), ``script`` (the pipeline's
script, if any), ``job.sh`` (the batch script), ``inputs/`` (the datasets, read-only:
``ORCH_INPUT_DIR``), ``outputs/`` (the job's output dir: ``ORCH_OUTPUT_DIR``) and, for a run
with secrets, ``secrets.env`` (mode 0600). The outputs spec stays out of the job's reach, in
``<work_root>/.orch/``. The job writes ``output.log``,
``slurm_job_id`` when it starts and ``exit_code`` when its command returns. The worker keeps
``handle`` once Slurm took the job.

Once handed to the job's user (:func:`write_inputs`), the dir is the job's: the worker reads
the job's files without following links and writes its own by a fresh name and a rename
(``workdirs``), so a job cannot make the worker read or overwrite anything outside it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ...contract import JobSpec
from ...staging import remove_tree
from ..base import ExecutorError
from ..workdirs import clean_run_dir, read_from, read_small, write_atomic
from .batch_script import SECRETS_FILE
from .handle import PROCESS_ID, Handle
from .job_user import JobUser
from .settings import setting

# The datasets, staged read-only (the worker's); the job's output dir (the job's user's).
INPUTS_DIR, OUTPUTS_DIR = "inputs", "outputs"
# Under the work root: the worker's own files about runs (0700), out of the jobs' reach.
PRIVATE_DIR = ".orch"
SAFE_PATH = re.compile(r"/[A-Za-z0-9_./@+,=-]*")
TOMBSTONE = {"handle", "claim", "exit_code", "slurm_job_id"}  # outlive release()


def work_root(settings: dict) -> Path:
    """The pool's ``work_root`` (env ``ORCH_SLURM_WORK_ROOT``, default ``var/work/slurm`` from
    the worker's directory), absolute; refused when a Slurm path could not carry it."""
    root = Path(setting(settings, "work_root", "ORCH_SLURM_WORK_ROOT", "var/work/slurm"))
    root = root.absolute()
    if not SAFE_PATH.fullmatch(str(root)):
        raise ExecutorError(f"work_root {str(root)!r} has characters a Slurm path cannot "
                            "carry; use letters, digits and _ . / @ + , = -", permanent=True)
    return root


def run_dir(root: Path, process_id: str) -> Path:
    if not PROCESS_ID.fullmatch(process_id or ""):
        raise ExecutorError(f"process id {process_id!r} cannot name a Slurm job",
                            permanent=True)
    return root / process_id


def write_inputs(work_dir: Path, spec: JobSpec, script: str, secrets: str | None = None,
                 owner: JobUser | None = None) -> None:
    """The job's input files, then the run dir, handed to ``owner`` (mode 0700).

    Each file is made anew (O_EXCL: never through a link a job left) and chowned by its
    descriptor, never by name: a name in a dir the job's user can write may be swapped."""
    files = {"config.json": (json.dumps(spec.config), 0o600), "job.sh": (script, 0o700)}
    if spec.script:
        files["script"] = (spec.script, 0o700)
    if secrets is not None:
        files[SECRETS_FILE] = (secrets, 0o600)
    for name, (text, mode) in files.items():
        path = work_dir / name
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "w") as out:
            if owner is not None:
                os.fchown(out.fileno(), owner.uid, owner.gid)
            out.write(text)
    fd = os.open(work_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if owner is not None:
            os.fchown(fd, owner.uid, owner.gid)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def make_output_dir(work_dir: Path, owner: JobUser | None) -> None:
    """The job's output dir (``ORCH_OUTPUT_DIR``), empty, the job's user's alone."""
    path = work_dir / OUTPUTS_DIR
    remove_tree(path)  # a failed start's
    path.mkdir(mode=0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if owner is not None:
            os.fchown(fd, owner.uid, owner.gid)
    finally:
        os.close(fd)


def private_dir(root: Path) -> Path:
    """``<work_root>/.orch``, the worker's alone (no process id starts with a dot)."""
    path = root / PRIVATE_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def saved_handle(work_dir: Path) -> Handle | None:
    """The handle the worker kept once Slurm took the job, if it did."""
    return Handle.parse(read_small(work_dir / "handle") or "")


def keep_handle(work_dir: Path, handle: Handle) -> None:
    write_atomic(work_dir / "handle", str(handle))


def started_job(work_dir: Path, name: str) -> Handle | None:
    """The job the batch script said it is (``slurm_job_id``, written when it starts), with a
    submit time a minute before the file's: the job itself ran, whatever the worker kept."""
    job_id = read_small(work_dir / "slurm_job_id")
    if not (job_id and job_id.isdigit()):
        return None
    stamp = int(os.lstat(work_dir / "slurm_job_id").st_mtime) - 60
    return Handle(job_id, name, stamp)


def exit_code(work_dir: Path) -> int | None:
    """The code the job's command returned, once the batch script wrote it."""
    text = read_small(work_dir / "exit_code")
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def read_output(work_dir: Path, offset: int, limit: int) -> bytes:
    return read_from(work_dir / "output.log", offset, limit)


def clean(work_dir: Path) -> None:
    """Remove what a finished run left but its markers (:data:`TOMBSTONE`)."""
    clean_run_dir(work_dir, TOMBSTONE)
