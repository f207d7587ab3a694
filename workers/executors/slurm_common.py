"""What the two Slurm targets (``slurm``: sbatch and squeue; ``slurm_rest``: slurmrestd) share.

- **The work dir** ``<work_root>/<process id>/`` (mode 0700), on a file system the worker and
  the compute nodes both see. The worker writes ``config.json`` (the user's config, passed by
  path in ``ORCH_CONFIG_FILE``), ``script`` (the pipeline's script, if any), ``job.sh`` (the
  batch script) and, for a run with secrets, ``secrets.env`` (mode 0600). The job writes
  ``output.log``, ``slurm_job_id`` when it starts and ``exit_code`` when its command returns.
  The worker keeps ``handle`` once Slurm took the job.
- **Who jobs run as**: never root. A worker that runs as root hands the run dir and its files
  to the jobs' user (:class:`JobUser`), and from then on treats the dir as the job's: it reads
  the job's files without following links and writes its own by a fresh name and a rename, so
  a job cannot make the worker read or overwrite anything outside it.
- **The batch script**, generated from the run spec and the pool's settings. Only validated
  values (numbers, the process id, the work dir, the pool's partition, account and qos) and the
  pipeline's own command, quoted, reach it; ``used_config`` never does.
- **Secrets** never go into the environment given to sbatch or slurmrestd: slurmctld saves that
  with the job (in its state directory, for as long as it keeps the job). The worker opens them
  into ``secrets.env``, which the batch script reads into its environment at its start and
  removes when it ends.
- **The one table of Slurm states** and the exit codes Slurm reports in its three spellings.
- **The poll rules** (:class:`SlurmExecutorBase`): one listing of live jobs answers for every
  handle; a job the listing no longer shows is looked up in the accounting and the exit-code
  file before anything is decided, and is called missing only after a grace period; a job id
  that now names another job is never taken for ours.

The handle is ``<job id>:<job name>:<submit epoch>``: the name guards against ids Slurm gives
out again after a cold start, the time bounds the accounting query.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path

from ..contract import JobSpec, PollItem, State, is_terminal
from ..secrets import unseal
from .base import Executor, ExecutorError, LogChunk, Status, Submission

log = logging.getLogger(__name__)

# --- the one table of Slurm states ------------------------------------------------------------

# Slurm's job state (as squeue, sacct and slurmrestd spell it) -> our state, and what it means.
SLURM_STATES: dict[str, tuple[State, str]] = {
    "PENDING": (State.SUBMITTED, "waiting in the Slurm queue"),
    "CONFIGURING": (State.SUBMITTED, "its nodes are being configured"),
    "REQUEUED": (State.SUBMITTED, "requeued by Slurm"),
    "REQUEUE_HOLD": (State.SUBMITTED, "requeued and held by Slurm"),
    "REQUEUE_FED": (State.SUBMITTED, "requeued by the federation"),
    "RESV_DEL_HOLD": (State.SUBMITTED, "held: its reservation was deleted"),
    "RUNNING": (State.RUNNING, ""),
    "COMPLETING": (State.RUNNING, "ending: Slurm is cleaning up"),
    "SUSPENDED": (State.RUNNING, "suspended by Slurm"),
    "STOPPED": (State.RUNNING, "stopped by a signal, still holding its nodes"),
    "RESIZING": (State.RUNNING, "being resized"),
    "SIGNALING": (State.RUNNING, "being signalled"),
    "STAGE_OUT": (State.RUNNING, "staging out its files"),
    "COMPLETED": (State.SUCCEEDED, ""),
    "FAILED": (State.FAILED, "failed"),
    "CANCELLED": (State.STOPPED, "cancelled"),
    "TIMEOUT": (State.FAILED, "ran past its time limit"),
    "OUT_OF_MEMORY": (State.FAILED, "ran out of memory"),
    "NODE_FAIL": (State.FAILED, "its node failed"),
    "PREEMPTED": (State.FAILED, "preempted by a job of higher priority"),
    "BOOT_FAIL": (State.FAILED, "its node failed to boot"),
    "DEADLINE": (State.FAILED, "could not end before its deadline"),
    "SPECIAL_EXIT": (State.FAILED, "held after a special exit"),
}


def slurm_state_name(raw: str) -> str:
    """``CANCELLED by 0``, ``CANCELLED+``, ``cancelled`` -> ``CANCELLED``."""
    return (raw.split() or [""])[0].rstrip("+").upper()


@dataclass
class JobRecord:
    """One job as Slurm lists it. ``exit_code`` is already a plain exit status."""

    job_id: str
    name: str
    state: str
    exit_code: int | None = None
    reason: str = ""
    submitted: float | None = None


def slurm_status(record: JobRecord, exit_file: int | None = None) -> Status:
    """Our Status for a Slurm job. ``exit_file`` is the code the job wrote, when it did."""
    name = slurm_state_name(record.state)
    if name not in SLURM_STATES:
        log.warning("job %s is in Slurm state %r, not in our table", record.job_id, record.state)
        return Status(message=f"Slurm state {record.state} is not known here; deciding nothing")
    state, meaning = SLURM_STATES[name]
    reason = record.reason if record.reason not in ("", "None", "(null)") else ""
    if not is_terminal(state):
        return Status(state, message="; ".join(x for x in (meaning, reason) if x))
    code = exit_file if exit_file is not None else record.exit_code
    if state is State.SUCCEEDED:
        return Status(state, 0 if code is None else code)
    if name == "FAILED" and code:
        return Status(state, code, f"exited with code {code}")
    if not code:  # sacct says 0:0 for a TIMEOUT: trust the state, not that code
        code = None
    return Status(state, code, f"{meaning} (Slurm {name}{f', {reason}' if reason else ''})")


def exit_from_wait_status(raw: int | None) -> int | None:
    """squeue's ``exit_code`` and slurmrestd's are raw wait statuses: 768 is exit 3."""
    if raw is None or raw < 0:
        return None
    signal = raw & 0x7F
    return 128 + signal if signal else (raw >> 8) & 0xFF


def exit_from_sacct(text: str) -> int | None:
    """sacct's ``3:0`` (code:signal) -> 3; ``0:15`` -> 143."""
    code, _, signal = text.partition(":")
    try:
        return 128 + int(signal) if signal and int(signal) else int(code)
    except ValueError:
        return None


# --- handles, names and the values that reach a script ----------------------------------------

PROCESS_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
SETTING_VALUE = re.compile(r"[A-Za-z0-9_.,:@+=-]{1,200}")
SAFE_PATH = re.compile(r"/[A-Za-z0-9_./@+,=-]*")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Handle:
    job_id: str
    name: str
    submitted: int

    def __str__(self) -> str:
        return f"{self.job_id}:{self.name}:{self.submitted}"

    @property
    def process_id(self) -> str:
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


def setting(settings: dict, key: str, env: str | None = None, default=None):
    """A pool setting, else the environment variable ``env``, else ``default``."""
    value = settings.get(key)
    if value in (None, ""):
        value = os.environ.get(env, "") if env else ""
    return value if value not in (None, "") else default


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
    return JobOptions(
        name=spec.job_name, work_dir=work_dir,
        cpus=max(1, math.ceil(res.cpus or 1)), memory_mb=max(1, int(res.memory_mb or 1)),
        gpus=max(0, int(res.gpus or 0)),
        time_min=math.ceil(res.time_limit_s / 60) if res.time_limit_s else None,
        **picked,
    )


def job_command(spec: JobSpec) -> str:
    """The line of the batch script that runs the pipeline: its own argv, each word quoted."""
    if spec.image:
        raise ExecutorError(
            f"the Slurm targets cannot run image {spec.image!r}; use target docker or ecs",
            permanent=True,
        )
    if spec.script:
        return "./script" if spec.script.startswith("#!") else "/bin/sh ./script"
    if not spec.command:
        raise ExecutorError("the pipeline names no command or script", permanent=True)
    return " ".join(shlex.quote(str(word)) for word in spec.command)


SECRETS_FILE = "secrets.env"


def batch_script(spec: JobSpec, options: JobOptions) -> str:
    lines = [
        "#!/bin/sh",
        *(f"#SBATCH {opt}" for opt in options.directives()),
        "# Written by orchestration. The user's config is data: config.json, by path in",
        "# ORCH_CONFIG_FILE. exit_code is written last, when the command has returned.",
        *(secrets_lines(options.work_dir / SECRETS_FILE) if spec.secret_env else []),
        'echo "$SLURM_JOB_ID" > slurm_job_id',
        "rm -f exit_code",
        job_command(spec),
        "code=$?",
        'echo "$code" > exit_code.tmp && mv -f exit_code.tmp exit_code',
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
    return env


# --- who jobs run as ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobUser:
    """A local account Slurm jobs run as, other than root: when the worker is root, it owns
    each run dir and its files, and (sbatch target) sbatch and scancel run as it."""

    name: str
    uid: int
    gid: int
    home: str

    @property
    def groups(self) -> list[int]:
        return os.getgrouplist(self.name, self.gid)


def local_user(name: str, what: str = "settings.user") -> JobUser | None:
    """The local account ``name`` (a user name or uid), or None when this host has none.
    Root, by any name, is refused (permanently): Slurm jobs never run as root."""
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        return None
    if entry.pw_uid == 0:
        raise ExecutorError(f"{what}: {name!r} is root (uid 0); Slurm jobs never run as root: "
                            "name an unprivileged user such as orch-slurm", permanent=True)
    return JobUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


# Work roots a job user was seen to reach, so the check costs one process per root, not per job.
_REACHABLE: set[tuple[str, int]] = set()


def check_reachable(root: Path, user: JobUser) -> None:
    """Fail (permanently, naming ``work_root``) when ``user`` cannot search ``root``: every
    directory on its path must let the user through, or its jobs could not even start."""
    if (str(root), user.uid) in _REACHABLE:
        return
    done = subprocess.run(["test", "-x", str(root)], user=user.uid, group=user.gid,
                          extra_groups=user.groups, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        raise ExecutorError(
            f"settings.work_root: {root} is out of reach of {user.name}, the user Slurm jobs "
            "run as: every directory on its path must be searchable by that user (chmod o+x), "
            "or choose a work_root elsewhere", permanent=True)
    _REACHABLE.add((str(root), user.uid))


# --- running commands --------------------------------------------------------------------------

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


def run_command(
    argv: list[str], timeout: float, env: dict[str, str] | None = None,
    user: JobUser | None = None,
) -> subprocess.CompletedProcess:
    """Run one Slurm command: an argv list (never a shell line), a timeout, no stdin; as
    ``user`` when given (the worker must be root), else as the worker.

    Returns the finished process whatever its exit status (callers read Slurm's words);
    raises ExecutorError when it cannot be run or does not end in ``timeout`` seconds."""
    started = time.monotonic()
    as_user = {} if user is None else {
        "user": user.uid, "group": user.gid, "extra_groups": user.groups}
    try:
        done = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, check=False, **as_user,
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


# --- the executor both targets are -------------------------------------------------------------

CLAIM_WAIT_S = 30  # how long a second delivery waits for the first one's handle
CLAIM_STALE_S = 120  # a claim this old with no job behind it was left by a worker that died
TOMBSTONE = {"handle", "claim", "exit_code", "slurm_job_id"}  # outlive release()


class SlurmExecutorBase(Executor):
    """The rules of both Slurm targets; a subclass says how to reach Slurm.

    ``start`` opens the run's secrets itself, into the secrets file (see the module's doc).

    Settings read here: ``work_root`` (env ``ORCH_SLURM_WORK_ROOT``, default ``var/work/slurm``
    from the worker's directory, on a file system the compute nodes share), ``partition``,
    ``account``, ``qos``, ``lost_grace_s`` (60) and ``keep_work_dir`` (false).
    """

    # --- what a subclass implements -----------------------------------------------------------

    opens_secrets = True

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
        root = Path(setting(self.settings, "work_root", "ORCH_SLURM_WORK_ROOT", "var/work/slurm"))
        root = root.absolute()
        if not SAFE_PATH.fullmatch(str(root)):
            raise ExecutorError(f"work_root {str(root)!r} has characters a Slurm path cannot "
                                "carry; use letters, digits and _ . / @ + , = -", permanent=True)
        return root

    def work_dir(self, process_id: str) -> Path:
        if not PROCESS_ID.fullmatch(process_id or ""):
            raise ExecutorError(f"process id {process_id!r} cannot name a Slurm job",
                                permanent=True)
        return self.work_root / process_id

    @property
    def lost_grace_s(self) -> float:
        return float(setting(self.settings, "lost_grace_s", "ORCH_SLURM_LOST_GRACE_S", 60))

    # --- submit -------------------------------------------------------------------------------

    def find(self, spec: JobSpec) -> Submission | None:
        work_dir = self.work_dir(spec.process_id)
        saved = Handle.parse(read_job_file(work_dir / "handle") or "")
        if saved is not None and saved.name == spec.job_name:
            return Submission(str(saved), State.SUBMITTED)
        records = [r for r in self.live_jobs([spec.job_name]) if r.name == spec.job_name]
        if records:  # submitted, then the worker died before it kept the handle
            best = max(records, key=lambda r: (not _has_ended(r), int(r.job_id)))
            found = Handle(best.job_id, spec.job_name, int(best.submitted or time.time()) - 1)
            write_own(work_dir / "handle", str(found))
            return Submission(str(found), State.SUBMITTED)
        started = read_job_file(work_dir / "slurm_job_id")  # the job itself said so
        if started and started.isdigit():
            stamp = int(os.lstat(work_dir / "slurm_job_id").st_mtime) - 60
            return Submission(str(Handle(started, spec.job_name, stamp)), State.SUBMITTED)
        return None

    def start(self, spec: JobSpec) -> Submission:
        owner = self.job_owner()  # first: a pool that would run jobs as root writes nothing
        work_dir = self.work_dir(spec.process_id)
        options = job_options(spec, self.settings, work_dir)
        script = batch_script(spec, options)
        env = job_env(spec, work_dir, self.base_env())
        secrets = secrets_file_text(unseal(spec.secret_env, process_id=spec.process_id,
                                           pool=spec.pool)) if spec.secret_env else None
        work_dir.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            check_reachable(self.work_root, owner)
        found = self._claim(spec, work_dir)
        if found is not None:
            return found
        try:
            self._write_inputs(spec, work_dir, script, secrets, owner)
            submitted = int(time.time()) - 1
            job_id = self.submit_job(spec, options, script, env)
        except BaseException:
            (work_dir / SECRETS_FILE).unlink(missing_ok=True)  # no job will read it
            (work_dir / "claim").unlink(missing_ok=True)
            raise
        handle = Handle(job_id, spec.job_name, submitted)
        write_own(work_dir / "handle", str(handle))
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

    def _write_inputs(self, spec: JobSpec, work_dir: Path, script: str,
                      secrets: str | None = None, owner: JobUser | None = None) -> None:
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
        code = self._exit_file(handle)
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

    def _exit_file(self, handle: Handle) -> int | None:
        text = read_job_file(self.work_dir(handle.process_id) / "exit_code")
        try:
            return int(text) if text is not None else None
        except ValueError:
            return None

    def cancel(self, handle: str) -> None:
        parsed = Handle.parse(handle)
        if parsed is not None:
            self.cancel_job(parsed)

    def read_log(self, item: PollItem, limit: int) -> LogChunk:
        handle = Handle.parse(item.handle)
        if handle is None:
            return LogChunk()
        fd = open_job_file(self.work_dir(handle.process_id) / "output.log")
        if fd is None:
            return LogChunk()
        with os.fdopen(fd, "rb") as out:
            out.seek(item.log_offset)
            return LogChunk(out.read(limit))

    def release(self, handle: str) -> None:
        parsed = Handle.parse(handle)
        if parsed is None or str(setting(self.settings, "keep_work_dir", default="")).lower() in (
            "1", "true", "yes",
        ):
            return
        work_dir = self.work_dir(parsed.process_id)
        for path in work_dir.iterdir() if work_dir.is_dir() else ():
            if path.name in TOMBSTONE:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _has_ended(record: JobRecord) -> bool:
    state, _ = SLURM_STATES.get(slurm_state_name(record.state), (State.RUNNING, ""))
    return is_terminal(state)


# --- files in a run dir, which the job's user may change under the worker ---------------------


def open_job_file(path: Path) -> int | None:
    """A descriptor of the regular file ``path``, or None when there is none. A link (which
    could point the worker at its own keys) or a fifo (which would hang it) counts as none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        log.warning("%s is a link, not the job's file: ignored", path)
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        log.warning("%s is not a regular file: ignored", path)
        return None
    return fd


def read_job_file(path: Path, limit: int = 4096) -> str | None:
    """The first ``limit`` bytes of a small file of the run dir (an id, a code), stripped."""
    fd = open_job_file(path)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as out:
        try:
            return out.read(limit).decode().strip()
        except UnicodeDecodeError:
            return None


def write_own(path: Path, text: str) -> None:
    """Write one of the worker's files in a run dir: a fresh, unguessable name (O_EXCL), then
    a rename, which replaces a link planted at ``path`` instead of writing through it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
