"""The executor both Slurm targets are: the rules they share; a subclass says how to reach Slurm.

**The poll rules**: one listing of live jobs answers for every handle; a job the listing no
longer shows is looked up in the accounting and the exit-code file before anything is decided,
and is called missing only after a grace period; a job id that now names another job is never
taken for ours (the handle carries our job name, see ``handle``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from abc import abstractmethod
from dataclasses import replace
from pathlib import Path

from ... import outputs, staging
from ...contract import JobSpec, PollItem, State
from ...secrets import unseal
from ..base import Executor, ExecutorError, LogChunk, Status, Submission
from ..workdirs import keep_work_dir, run_key
from . import run_dirs
from .batch_script import (
    SECRETS_FILE,
    JobOptions,
    batch_script,
    job_env,
    job_options,
    secrets_file_text,
)
from .handle import Handle
from .job_user import JobUser, check_reachable
from .sbatch_render import exported
from .settings import setting
from .states import JobRecord, has_ended, slurm_status

log = logging.getLogger(__name__)

CLAIM_WAIT_S = 30  # how long a second delivery waits for the first one's handle
CLAIM_STALE_S = 120  # a claim this old with no job behind it was left by a worker that died

# Words of a Slurm error that mean "ask again later", not "this job can never be submitted".
# "Required node not available" comes for a few seconds after slurmctld restarts, until the
# node registers again (drill 7); an admin's drain ends too.
TRANSIENT_ERRORS = (
    "unable to contact", "timed out", "zero bytes were transmitted", "connection refused",
    "temporarily unavailable", "temporarily unable", "communication connection failure",
    "transport endpoint", "try again", "required node not available",
)


def submit_error(text: str) -> ExecutorError:
    """The error for a refused submission: permanent unless Slurm was merely unreachable."""
    transient = any(word in text.lower() for word in TRANSIENT_ERRORS)
    return ExecutorError(f"Slurm refused the job: {text.strip()}", permanent=not transient)


class SlurmExecutorBase(Executor):
    """The rules of both Slurm targets; a subclass says how to reach Slurm.

    ``start`` opens the run's secrets itself, into the secrets file (see ``batch_script``;
    ``opens_secrets`` in the targets' table of ``workers/contract.py``).

    Settings read here: ``work_root`` (env ``ORCH_SLURM_WORK_ROOT``, default ``var/work/slurm``
    from the worker's directory, on a file system the compute nodes share), ``partition``,
    ``account``, ``qos``, ``lost_grace_s`` (60) and ``keep_work_dir`` (false).
    """

    # --- what a subclass implements -----------------------------------------------------------

    @abstractmethod
    def live_jobs(self, names: list[str]) -> list[JobRecord]:
        """The jobs slurmctld still holds (any state) named in ``names``: one call per batch.
        Raises ExecutorError when Slurm cannot be asked."""

    @abstractmethod
    def ended_jobs(self, handles: list[Handle]) -> list[JobRecord]:
        """What the accounting knows of ``handles`` (jobs slurmctld has forgotten): one call,
        or none when the target has no accounting. Raises ExecutorError when it fails."""

    @abstractmethod
    def submit_job(self, spec: JobSpec, options: JobOptions, script: str, env: dict) -> str:
        """Hand the batch script to Slurm; return the job id. Raises ExecutorError."""

    @abstractmethod
    def cancel_job(self, handle: Handle) -> None:
        """Cancel the job of ``handle`` if it is still ours and not ended; else do nothing."""

    def job_owner(self) -> JobUser | None:
        """The local account that must own the run dirs: the jobs' user when the worker is
        root; None when the jobs run as the worker itself. Raises a permanent ExecutorError
        when the pool's settings would have jobs run as root."""
        return None

    def base_env(self) -> dict[str, str]:
        keys = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
        return {key: os.environ[key] for key in keys if key in os.environ}

    # --- the work dir -------------------------------------------------------------------------

    @property
    def work_root(self) -> Path:
        return run_dirs.work_root(self.settings)

    def work_dir(self, process_id: str) -> Path:
        return run_dirs.run_dir(self.work_root, process_id)

    @property
    def lost_grace_s(self) -> float:
        return float(setting(self.settings, "lost_grace_s", "ORCH_SLURM_LOST_GRACE_S", 60))

    # --- submit -------------------------------------------------------------------------------

    def attempt_dir(self, spec: JobSpec) -> Path:
        """The run dir of ``spec``'s attempt: named as its job is, less ``orch-`` (the
        process id for the first attempt), so a handle's name leads back to it."""
        return self.work_dir(run_key(spec.process_id, spec.attempt))

    def find(self, spec: JobSpec) -> Submission | None:
        work_dir = self.attempt_dir(spec)
        saved = run_dirs.saved_handle(work_dir)
        if saved is not None and saved.name == spec.job_name:
            return Submission(str(saved), State.SUBMITTED)
        records = [r for r in self.live_jobs([spec.job_name]) if r.name == spec.job_name]
        if records:  # submitted, then the worker died before it kept the handle
            best = max(records, key=lambda r: (not has_ended(r), int(r.job_id)))
            found = Handle(best.job_id, spec.job_name, int(best.submitted or time.time()) - 1)
            run_dirs.keep_handle(work_dir, found)
            return Submission(str(found), State.SUBMITTED)
        started = run_dirs.started_job(work_dir, spec.job_name)
        if started is not None:
            return Submission(str(started), State.SUBMITTED)
        return None

    def start(self, spec: JobSpec) -> Submission:
        owner = self.job_owner()  # first: a pool that would run jobs as root writes nothing
        work_dir = self.attempt_dir(spec)
        options = job_options(spec, self.settings, work_dir)
        script = batch_script(spec, options)
        # With the values its export rules take from this submission node.
        env = {**job_env(spec, work_dir, self.base_env()), **exported(options.sbatch)}
        secrets = secrets_file_text(unseal(spec.secret_env, process_id=spec.process_id,
                                           pool=spec.pool)) if spec.secret_env else None
        work_dir.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            check_reachable(self.work_root, owner)
        found = self._claim(spec, work_dir)
        if found is not None:
            return found
        try:
            # Datasets read-only in the run dir, staged here on the submission node; the
            # config holds their paths on the shared file system.
            staging.stage_inputs(spec, work_dir / run_dirs.INPUTS_DIR, link=owner is not None)
            spec = replace(spec, config=staging.config_for_job(
                spec, str(work_dir / run_dirs.INPUTS_DIR)))
            if spec.outputs:
                run_dirs.make_output_dir(work_dir, owner)
                outputs.save_spec(self._outputs_spec_file(run_key(spec.process_id, spec.attempt)),
                                  spec.outputs)
            run_dirs.write_inputs(work_dir, spec, script, secrets, owner)
            submitted = int(time.time()) - 1
            job_id = self.submit_job(spec, options, script, env)
        except BaseException:
            (work_dir / SECRETS_FILE).unlink(missing_ok=True)  # no job will read it
            (work_dir / "claim").unlink(missing_ok=True)
            raise
        handle = Handle(job_id, spec.job_name, submitted)
        run_dirs.keep_handle(work_dir, handle)
        return Submission(str(handle), State.SUBMITTED)

    def _claim(self, spec: JobSpec, work_dir: Path) -> Submission | None:
        """Make this delivery the one that submits; or return the job another one submitted."""
        claim = work_dir / "claim"
        for _ in range(2):
            try:
                os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                return None
            except FileExistsError:
                pass
            deadline = time.monotonic() + CLAIM_WAIT_S
            while time.monotonic() < deadline:
                if (found := self.find(spec)) is not None:
                    return found
                time.sleep(0.5)
            with contextlib.suppress(FileNotFoundError):
                if time.time() - claim.stat().st_mtime < CLAIM_STALE_S:
                    break
                log.warning("taking over the stale claim on %s", spec.process_id)
                claim.unlink()
        raise ExecutorError(f"another delivery of {spec.process_id} is still submitting it")

    # --- poll ---------------------------------------------------------------------------------

    def statuses(self, items: list[PollItem]) -> dict[str, Status]:
        handles = {item.handle: Handle.parse(item.handle) for item in items}
        answers: dict[str, Status] = {
            text: Status(missing=True, message=f"{text!r} is not a Slurm handle of ours")
            for text, handle in handles.items() if handle is None
        }
        ours = {text: h for text, h in handles.items() if h is not None}
        names = sorted({h.name for h in ours.values()})
        live = {(r.job_id, r.name): r for r in self.live_jobs(names)} if names else {}
        gone: dict[str, Handle] = {}
        for text, handle in ours.items():
            record = live.get((handle.job_id, handle.name))
            if record is None:
                gone[text] = handle
            else:
                answers[text] = slurm_status(record)
        if gone:
            ended = {(r.job_id, r.name): r for r in self.ended_jobs(list(gone.values()))}
            for text, handle in gone.items():
                record = ended.get((handle.job_id, handle.name))
                answers[text] = self._status_of_gone(handle, record)
        return answers

    def _status_of_gone(self, handle: Handle, record: JobRecord | None) -> Status:
        """A job slurmctld no longer lists (or whose id now names another job)."""
        code = run_dirs.exit_code(self.work_dir(handle.process_id))
        if record is not None:
            return slurm_status(record, code)
        if code is not None:
            return Status(State.SUCCEEDED, 0) if code == 0 else Status(
                State.FAILED, code, f"exited with code {code}"
                + (f" (killed by signal {code - 128})" if code > 128 else ""))
        age = time.time() - handle.submitted
        if age < self.lost_grace_s:
            return Status(message=f"job {handle.job_id} is not listed by Slurm yet, nor in its "
                                  f"accounting; deciding nothing for {self.lost_grace_s:.0f} s")
        return Status(missing=True, message=f"Slurm no longer knows job {handle.job_id} "
                                            f"({handle.name}) and it left no exit code")

    def cancel(self, handle: str) -> None:
        parsed = Handle.parse(handle)
        if parsed is not None:
            self.cancel_job(parsed)

    def read_log(self, item: PollItem, limit: int) -> LogChunk:
        handle = Handle.parse(item.handle)
        if handle is None:
            return LogChunk()
        work_dir = self.work_dir(handle.process_id)
        return LogChunk(run_dirs.read_output(work_dir, item.log_offset, limit))

    def outputs_place(self, item: PollItem) -> tuple[Path, Path]:
        key = run_key(item.process_id, item.attempt)  # the attempt's run dir
        return self.work_dir(key) / run_dirs.OUTPUTS_DIR, self._outputs_spec_file(key)

    def _outputs_spec_file(self, key: str) -> Path:
        """Where the worker keeps a job's outputs spec (``key``: its run dir's name): out of
        the run dir, which is the job's (a job that rewrote it could store its files under
        another process's key)."""
        self.work_dir(key)  # checks the name
        return run_dirs.private_dir(self.work_root) / f"{key}.outputs.json"

    def release(self, handle: str) -> None:
        parsed = Handle.parse(handle)
        if parsed is not None and not keep_work_dir(self.settings):
            outputs.mark_released(self._outputs_spec_file(parsed.process_id))
            run_dirs.clean(self.work_dir(parsed.process_id))
