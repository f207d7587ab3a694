"""The slurm target: a worker on a Slurm submission node drives sbatch, squeue, scancel and sacct.

Every command goes through :func:`run_command` (an argv list and a timeout, never a shell
line). The rules both Slurm targets share (the batch script, the work dir, the state table,
what a vanished job means) live in the other modules of this package.

Pool settings, besides those of :class:`SlurmExecutorBase` (``work_root``, ``partition``,
``account``, ``qos``, ``lost_grace_s``, ``keep_work_dir``):

- ``accounting``: where a job slurmctld has forgotten is looked up. ``jobcomp`` (the default:
  ``sacct -c`` reads the ``jobcomp/filetxt`` file), ``slurmdbd`` (``sacct -X``) or ``none``
  (only the job's exit-code file). Env ``ORCH_SLURM_ACCOUNTING``.
- ``command_timeout_s``: how long one Slurm command may take (30). Env
  ``ORCH_SLURM_COMMAND_TIMEOUT_S``.
- ``bin_dir``: the directory of the Slurm commands to run (env ``ORCH_SLURM_BIN_DIR``; unset,
  they are found on PATH): how a worker drives a cluster of another Slurm release than its
  host's, such as the 24.11 commands ``deploy/slurm24-cluster.sh`` writes.
- ``user``: the user jobs run as (env ``ORCH_SLURM_USER``), never root. A worker running as
  root runs sbatch and scancel as this user (by uid, gid and groups, the way ``setpriv`` or
  ``runuser`` would) and hands it each run dir; without it, a root worker refuses every job.
  A worker that is not root submits as itself, and ``user``, if set, must name it. squeue and
  sacct only read, and run as the worker.

Why not ``sbatch --uid``: sbatch would still read the script as root and drop to the user only
once the job has its nodes, and scancel has no such option.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from typing import Any

from ...contract import JobSpec
from ..base import ExecutorError
from .base import SlurmExecutorBase, submit_error
from .batch_script import JobOptions
from .handle import Handle
from .job_user import JobUser, submitting_user
from .sbatch_render import sbatch_argv
from .settings import setting
from .states import JobRecord, exit_from_sacct, exit_from_wait_status

log = logging.getLogger(__name__)

# One line per job: id, state, raw exit status, reason, submit time, and the name last (a
# stranger's job name may hold the separator; ours never do).
SQUEUE_FORMAT = "JobID:|,State:|,exit_code:|,Reason:|,SubmitTime:|,Name:"
SACCT_FORMAT = "JobID,State,ExitCode,Submit,JobName"
# scancel's words for "there is nothing (of ours) left to cancel".
NOTHING_TO_CANCEL = ("no active jobs match", "invalid job id", "already completing", "completed")


def run_command(
    argv: list[str], timeout: float, env: dict[str, str] | None = None,
    user: JobUser | None = None,
) -> subprocess.CompletedProcess:
    """Run one Slurm command: an argv list (never a shell line), a timeout, no stdin; as
    ``user`` when given (the worker must be root), else as the worker.

    Returns the finished process whatever its exit status (callers read Slurm's words);
    raises ExecutorError when it cannot be run or does not end in ``timeout`` seconds."""
    started = time.monotonic()
    # None is subprocess's own default for each: the worker's user, group and groups.
    uid, gid, groups = (None, None, None) if user is None else (user.uid, user.gid, user.groups)
    try:
        done = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, check=False, user=uid, group=gid, extra_groups=groups,
        )
    except FileNotFoundError:
        raise ExecutorError(f"{argv[0]} is not installed on this worker's host") from None
    except subprocess.TimeoutExpired:
        raise ExecutorError(f"{argv[0]} did not answer within {timeout} s") from None
    log.debug("%s -> %s in %.3f s", argv[0], done.returncode, time.monotonic() - started)
    return done


def chunks(words: list[str], max_chars: int = 100_000) -> list[list[str]]:
    """Split ``words`` so each comma-joined chunk fits in one argument (Linux caps one argv
    string at 128 KiB): one call answers for about 2,000 job names, 12,000 ids."""
    out: list[list[str]] = [[]]
    size = 0
    for word in words:
        if out[-1] and size + len(word) + 1 > max_chars:
            out.append([])
            size = 0
        out[-1].append(word)
        size += len(word) + 1
    return [chunk for chunk in out if chunk]


class SlurmExecutor(SlurmExecutorBase):
    target = "slurm"

    def run(self, argv: list[str], env: dict | None = None,
            user: JobUser | None = None) -> subprocess.CompletedProcess:
        timeout = float(setting(self.settings, "command_timeout_s",
                                "ORCH_SLURM_COMMAND_TIMEOUT_S", 30))
        if bin_dir := setting(self.settings, "bin_dir", "ORCH_SLURM_BIN_DIR"):
            argv = [os.path.join(str(bin_dir), argv[0]), *argv[1:]]
        return run_command(argv, timeout, env, user=user)

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
        records: list[JobRecord] = []
        named = chunks(names)
        # More names than one argument holds: one squeue of every job, ours picked out here.
        for chunk in named if len(named) == 1 else [[]]:
            done = self.run([
                "squeue", "--noheader", "--states=all",
                *([f"--name={','.join(chunk)}"] if chunk else []),
                f"--Format={SQUEUE_FORMAT}",
            ])
            if done.returncode != 0:
                raise ExecutorError(f"squeue failed, deciding nothing: {_said(done)}")
            records += filter(None, map(_squeue_record, done.stdout.splitlines()))
        if len(named) > 1:
            wanted = set(names)
            records = [record for record in records if record.name in wanted]
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
        records: list[JobRecord] = []
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
        # The sbatch options, each one argv element; --export=ALL with the pool's rules.
        argv = sbatch_argv(options.sbatch, gpus=options.gpus)
        done = self.run(["sbatch", "--parsable", *argv, str(options.work_dir / "job.sh")],
                        env=env, user=self.job_owner())
        if done.returncode != 0:
            raise submit_error(_said(done))
        job_id = done.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise ExecutorError(f"sbatch answered {done.stdout.strip()!r}, not a job id")
        return job_id

    def cluster_health(self) -> dict[str, Any]:
        """Whether slurmctld answers ``scontrol ping`` (with the pool's commands)."""
        try:
            done = self.run(["scontrol", "ping"])
        except ExecutorError as exc:
            return {"reachable": False, "rest_api_version": None, "detail": str(exc)}
        said = " ".join((done.stdout + done.stderr).split())[:300]
        return {"reachable": done.returncode == 0 and "is UP" in done.stdout,
                "rest_api_version": None, "detail": f"scontrol ping: {said}"}

    def cancel_job(self, handle: Handle) -> None:
        # --name makes scancel refuse a job that merely carries our old id.
        # As the jobs' user: it can cancel its own jobs and nobody else's.
        done = self.run(["scancel", f"--name={handle.name}", handle.job_id],
                        user=self.job_owner())
        said = _said(done)
        if done.returncode != 0 and not any(w in said.lower() for w in NOTHING_TO_CANCEL):
            raise ExecutorError(f"scancel of job {handle.job_id} failed: {said}")


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
    return JobRecord(job_id, name, state, _squeue_exit(raw_exit), reason, _epoch(submitted))


def _squeue_exit(text: str) -> int | None:
    """squeue's exit_code: the raw wait status in 22.05 (768 is exit 3), ``code:signal`` as
    sacct writes it in 24.11 (``3:0``)."""
    if ":" in text:
        return exit_from_sacct(text)
    return exit_from_wait_status(int(text)) if text.lstrip("-").isdigit() else None


def _sacct_record(line: str) -> JobRecord | None:
    fields = line.split("|", 4)
    if len(fields) != 5 or not fields[0].isdigit():
        return None
    job_id, state, exit_code, submitted, name = fields
    return JobRecord(job_id, name, state, exit_from_sacct(exit_code), "", _epoch(submitted))
