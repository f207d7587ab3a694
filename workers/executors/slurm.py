"""The slurm target: a worker on a Slurm submission node drives sbatch, squeue, scancel and sacct.

Every command goes through :func:`.slurm_common.run_command` (an argv list and
a timeout, never a shell line). The rules both Slurm targets share (the batch script, the work
dir, the state table, what a vanished job means) live in ``slurm_common``.

Pool settings, besides those of :class:`SlurmExecutorBase` (``work_root``, ``partition``,
``account``, ``qos``, ``lost_grace_s``, ``keep_work_dir``):

- ``accounting``: where a job slurmctld has forgotten is looked up. ``jobcomp`` (the default:
  ``sacct -c`` reads the ``jobcomp/filetxt`` file), ``slurmdbd`` (``sacct -X``) or ``none``
  (only the job's exit-code file). Env ``ORCH_SLURM_ACCOUNTING``.
- ``command_timeout_s``: how long one Slurm command may take (30). Env
  ``ORCH_SLURM_COMMAND_TIMEOUT_S``.
- ``user``: the user jobs run as (env ``ORCH_SLURM_USER``), never root. A worker running as
  root runs sbatch and scancel as this user (by uid, gid and groups, the way ``setpriv`` or
  ``runuser`` would) and hands it each run dir; without it, a root worker refuses every job.
  A worker that is not root submits as itself, and ``user``, if set, must name it. squeue and
  sacct only read, and run as the worker.

Why not ``sbatch --uid``: sbatch would still read the script as root and drop to the user only
once the job has its nodes, and scancel has no such option.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time

from ..contract import JobSpec
from . import slurm_common
from .base import ExecutorError
from .slurm_common import (
    Handle,
    JobOptions,
    JobRecord,
    JobUser,
    SlurmExecutorBase,
    chunks,
    exit_from_sacct,
    exit_from_wait_status,
    local_user,
    setting,
    submit_error,
)

# One line per job: id, state, raw exit status, reason, submit time, and the name last (a
# stranger's job name may hold the separator; ours never do).
SQUEUE_FORMAT = "JobID:|,State:|,exit_code:|,Reason:|,SubmitTime:|,Name:"
SACCT_FORMAT = "JobID,State,ExitCode,Submit,JobName"
# scancel's words for "there is nothing (of ours) left to cancel".
NOTHING_TO_CANCEL = ("no active jobs match", "invalid job id", "already completing", "completed")


class SlurmExecutor(SlurmExecutorBase):
    target = "slurm"

    def run(self, argv: list[str], env: dict | None = None,
            user: JobUser | None = None) -> subprocess.CompletedProcess:
        timeout = float(setting(self.settings, "command_timeout_s",
                                "ORCH_SLURM_COMMAND_TIMEOUT_S", 30))
        return slurm_common.run_command(argv, timeout, env, user=user)

    def job_owner(self) -> JobUser | None:
        return submitting_user(setting(self.settings, "user", "ORCH_SLURM_USER"))

    def base_env(self) -> dict[str, str]:
        env = super().base_env()
        if "SLURM_CONF" in os.environ:  # sbatch must find the cluster the worker uses
            env["SLURM_CONF"] = os.environ["SLURM_CONF"]
        if (owner := self.job_owner()) is not None:  # not the root worker's home
            env["HOME"] = owner.home
        return env

    # --- asking Slurm ---------------------------------------------------------------------------

    def live_jobs(self, names: list[str]) -> list[JobRecord]:
        records = []
        for chunk in chunks(names):
            done = self.run([
                "squeue", "--noheader", "--states=all", f"--name={','.join(chunk)}",
                f"--Format={SQUEUE_FORMAT}",
            ])
            if done.returncode != 0:
                raise ExecutorError(f"squeue failed, deciding nothing: {_said(done)}")
            records += filter(None, map(_squeue_record, done.stdout.splitlines()))
        return records

    def ended_jobs(self, handles: list[Handle]) -> list[JobRecord]:
        mode = setting(self.settings, "accounting", "ORCH_SLURM_ACCOUNTING", "jobcomp")
        if mode == "none":
            return []
        if mode not in ("jobcomp", "slurmdbd"):
            raise ExecutorError(f"accounting={mode!r}: use jobcomp, slurmdbd or none",
                                permanent=True)
        # Bounded by the earliest submit time: an old job that had the same id is not read.
        since = time.strftime("%Y-%m-%dT%H:%M:%S",
                              time.localtime(min(h.submitted for h in handles) - 60))
        records = []
        for chunk in chunks(sorted({h.job_id for h in handles})):
            done = self.run([
                "sacct", "-c" if mode == "jobcomp" else "-X", "--noheader", "--parsable2",
                f"--starttime={since}", f"--jobs={','.join(chunk)}", f"--format={SACCT_FORMAT}",
            ])
            if done.returncode != 0:
                raise ExecutorError(f"sacct failed, deciding nothing: {_said(done)}")
            records += filter(None, map(_sacct_record, done.stdout.splitlines()))
        return records

    def submit_job(self, spec: JobSpec, options: JobOptions, script: str, env: dict) -> str:
        done = self.run(["sbatch", "--parsable", "--export=ALL", str(options.work_dir / "job.sh")],
                        env=env, user=self.job_owner())
        if done.returncode != 0:
            raise submit_error(_said(done))
        job_id = done.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise ExecutorError(f"sbatch answered {done.stdout.strip()!r}, not a job id")
        return job_id

    def cancel_job(self, handle: Handle) -> None:
        # --name makes scancel refuse a job that merely carries our old id.
        # As the jobs' user: it can cancel its own jobs and nobody else's.
        done = self.run(["scancel", f"--name={handle.name}", handle.job_id],
                        user=self.job_owner())
        said = _said(done)
        if done.returncode != 0 and not any(w in said.lower() for w in NOTHING_TO_CANCEL):
            raise ExecutorError(f"scancel of job {handle.job_id} failed: {said}")


def submitting_user(configured: str | None) -> JobUser | None:
    """Who sbatch and scancel run as: the pool's ``user`` when the worker is root, else None
    (the worker itself). Raises a permanent ExecutorError, naming ``settings.user``, for a
    root worker without a user, for root, or for a user a non-root worker cannot be."""
    configured = str(configured) if configured not in (None, "") else None
    if os.geteuid() != 0:
        if configured is not None:
            named = local_user(configured)
            if named is None or named.uid != os.geteuid():
                me = pwd.getpwuid(os.geteuid()).pw_name
                raise ExecutorError(
                    f"settings.user: {configured!r}, but this worker runs as {me} and can "
                    f"submit jobs only as itself: run the worker as root or as {configured}",
                    permanent=True)
        return None
    if configured is None:
        raise ExecutorError(
            "settings.user: this worker runs as root and Slurm jobs never do: name the "
            "unprivileged user they run as (user: orch-slurm, or ORCH_SLURM_USER)",
            permanent=True)
    user = local_user(configured)
    if user is None:
        raise ExecutorError(f"settings.user: there is no user {configured!r} on this host",
                            permanent=True)
    return user


def _said(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in (done.stderr + done.stdout).splitlines() if "error" in line.lower()]
    return " ".join(lines or (done.stderr + done.stdout).split())[:500] or (
        f"exit status {done.returncode}")


def _epoch(text: str) -> float | None:
    try:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:  # N/A, Unknown
        return None


def _squeue_record(line: str) -> JobRecord | None:
    fields = line.split("|", 5)
    if len(fields) != 6 or not fields[0].strip().isdigit():
        return None
    job_id, state, raw_exit, reason, submitted, name = (f.strip() for f in fields)
    raw = int(raw_exit) if raw_exit.lstrip("-").isdigit() else None
    return JobRecord(job_id, name, state, exit_from_wait_status(raw), reason, _epoch(submitted))


def _sacct_record(line: str) -> JobRecord | None:
    fields = line.split("|", 4)
    if len(fields) != 5 or not fields[0].isdigit():
        return None
    job_id, state, exit_code, submitted, name = fields
    return JobRecord(job_id, name, state, exit_from_sacct(exit_code), "", _epoch(submitted))
