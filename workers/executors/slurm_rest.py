"""The slurm_rest target: jobs go to slurmrestd over HTTP, with a JWT renewed before it expires.

The worker needs no Slurm command and no munge key: only the URL and a way to get tokens. The
batch script, the work dir and the state table are those of the sbatch target
(``slurm_common``); the work dir must be on a file system the worker and the compute nodes share.

slurmrestd answers HTTP 500, not 401, to an expired token, and 500 with error 2017 to a job it
does not know; so the token is renewed when a third of its lifespan is left (no call has to
fail first), and "unknown job" is read from the error number, never from the status.

Pool settings, besides those of :class:`SlurmExecutorBase` (``work_root``, ``partition``,
``account``, ``qos``, ``lost_grace_s``, ``keep_work_dir``):

- ``url``: slurmrestd's address (env ``ORCH_SLURMRESTD_URL``, ``http://127.0.0.1:6820``);
  ``api_version`` (``v0.0.38``); ``request_timeout_s`` (30).
- ``user``: the Slurm user jobs run as, named in every token (env ``ORCH_SLURM_USER``, default
  the user the worker runs as).
- ``jwt_key``: the cluster's ``jwt_hs256.key``; tokens are minted from it with PyJWT (env
  ``ORCH_SLURM_JWT_KEY``). Without it tokens come from ``scontrol token``, which only root or
  SlurmUser may run. ``token_lifespan_s``: how long a token lives (1800).
- ``job_path``: PATH in the job's environment (``/usr/local/bin:/usr/bin:/bin``).
"""

from __future__ import annotations

import getpass
import os
import threading
import time
from pathlib import Path
from typing import Any

import requests

from ..contract import JobSpec
from .base import ExecutorError
from .slurm_common import (
    Handle,
    JobOptions,
    JobRecord,
    SlurmExecutorBase,
    exit_from_wait_status,
    run_command,
    setting,
    submit_error,
)

UNKNOWN_JOB = 2017  # ESLURM_INVALID_JOB_ID: not known, or purged
ALREADY_DONE = 2021  # ESLURM_ALREADY_DONE: cancel of a job that has ended


class RestError(ExecutorError):
    """slurmrestd answered with errors; ``numbers`` holds their Slurm error numbers."""

    def __init__(self, status: int, errors: list[dict], text: str = ""):
        self.status = status
        numbered = [(e, e.get("error_number", e.get("error_code"))) for e in errors]
        self.numbers = {number for _, number in numbered}  # error_code in submit answers
        words = "; ".join(f"{e.get('description') or e.get('error')} ({n})" for e, n in numbered)
        super().__init__(f"slurmrestd answered HTTP {status}: {words or text[:300]}")


class TokenSource:
    """JWTs for one user, minted from the key (PyJWT) or by ``scontrol token``.

    A token is replaced once two thirds of its lifespan have passed, so every request carries
    one with a third of its life left. Thread-safe; shared by every executor of the process.
    """

    def __init__(self, user: str, lifespan_s: int, key_path: str | None):
        self.user, self.lifespan_s, self.key_path = user, lifespan_s, key_path
        self.token: str | None = None
        self.renew_at = 0.0
        self.renewals = 0
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            now = time.time()
            if self.token is None or now >= self.renew_at:
                self.token = self._mint(int(now))
                self.renew_at = now + self.lifespan_s * 2 / 3
                self.renewals += 1
            return self.token

    def _mint(self, now: int) -> str:
        if self.key_path:
            try:
                import jwt  # PyJWT, only for workers that mint their own tokens
            except ImportError:
                raise ExecutorError("minting tokens from jwt_key needs PyJWT: "
                                    "pip install PyJWT", permanent=True) from None
            try:
                key = Path(self.key_path).read_bytes()
            except OSError as exc:
                raise ExecutorError(f"cannot read jwt_key {self.key_path}: {exc.strerror}",
                                    permanent=True) from None
            claims = {"iat": now, "exp": now + self.lifespan_s, "sun": self.user}
            return jwt.encode(claims, key, algorithm="HS256")
        done = run_command(
            ["scontrol", "token", f"username={self.user}", f"lifespan={self.lifespan_s}"], 30)
        token = done.stdout.strip().partition("SLURM_JWT=")[2].strip()
        if done.returncode != 0 or not token:
            raise ExecutorError(f"scontrol token failed: {(done.stderr or done.stdout).strip()}")
        return token


_SOURCES: dict[tuple, TokenSource] = {}
_SOURCES_LOCK = threading.Lock()


def token_source(user: str, lifespan_s: int, key_path: str | None) -> TokenSource:
    """The one TokenSource of this process for these settings (a worker makes an executor
    per message; they all share one token)."""
    with _SOURCES_LOCK:
        key = (user, lifespan_s, key_path)
        if key not in _SOURCES:
            _SOURCES[key] = TokenSource(user, lifespan_s, key_path)
        return _SOURCES[key]


class SlurmRestExecutor(SlurmExecutorBase):
    target = "slurm_rest"

    def __init__(self, pool: str, settings: dict[str, Any] | None = None):
        super().__init__(pool, settings)
        s = self.settings
        self.url = str(setting(s, "url", "ORCH_SLURMRESTD_URL", "http://127.0.0.1:6820"))
        self.url = self.url.rstrip("/")
        self.api_version = str(setting(s, "api_version", default="v0.0.38"))
        self.user = str(setting(s, "user", "ORCH_SLURM_USER", getpass.getuser()))
        self.timeout = float(setting(s, "request_timeout_s", default=30))
        self.tokens = token_source(
            self.user, int(setting(s, "token_lifespan_s", default=1800)),
            setting(s, "jwt_key", "ORCH_SLURM_JWT_KEY"),
        )

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One call to slurmrestd (``path`` under ``/slurm/<api_version>/``): its JSON answer.
        Raises RestError when Slurm reports errors, ExecutorError when it cannot be reached."""
        headers = {"X-SLURM-USER-NAME": self.user, "X-SLURM-USER-TOKEN": self.tokens.get()}
        url = f"{self.url}/slurm/{self.api_version}/{path}"
        try:
            answer = requests.request(method, url, json=body, headers=headers,
                                      timeout=self.timeout)
        except requests.RequestException as exc:
            raise ExecutorError(f"slurmrestd at {self.url} did not answer: {exc}") from None
        try:
            data = answer.json()
        except ValueError:
            raise RestError(answer.status_code, [], answer.text) from None
        errors = data.get("errors") or []
        if answer.status_code >= 400 or errors:
            raise RestError(answer.status_code, errors, answer.text)
        return data

    def job_owner(self) -> str | None:
        return self.user

    def base_env(self) -> dict[str, str]:
        return {
            "PATH": str(setting(self.settings, "job_path", default="/usr/local/bin:/usr/bin:/bin")),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }

    # --- asking Slurm ---------------------------------------------------------------------------

    def live_jobs(self, names: list[str]) -> list[JobRecord]:
        wanted = set(names)
        try:
            jobs = self.request("GET", "jobs").get("jobs") or []
        except ExecutorError as exc:
            raise ExecutorError(f"listing jobs failed, deciding nothing: {exc}") from None
        return [_record(job) for job in jobs if job.get("name") in wanted]

    def ended_jobs(self, handles: list[Handle]) -> list[JobRecord]:
        return []  # no accounting through slurmrestd without slurmdbd: the exit-code file tells

    def submit_job(self, spec: JobSpec, options: JobOptions, script: str, env: dict) -> str:
        job: dict[str, Any] = {
            "name": options.name,
            "current_working_directory": str(options.work_dir),
            "standard_output": str(options.output),
            "standard_error": str(options.output),
            "cpus_per_task": options.cpus,
            "memory_per_node": options.memory_mb,
            "environment": env,
        }
        if options.time_min:
            job["time_limit"] = options.time_min
        if options.gpus:
            job["gres"] = f"gpu:{options.gpus}"
        for key in ("partition", "account", "qos"):
            if value := getattr(options, key):
                job[key] = value
        try:
            answer = self.request("POST", "job/submit", {"job": job, "script": script})
        except RestError as exc:
            raise submit_error(str(exc)) from None
        job_id = str(answer.get("job_id", ""))
        if not job_id.isdigit():
            raise ExecutorError(f"slurmrestd gave no job id: {answer}")
        return job_id

    def cancel_job(self, handle: Handle) -> None:
        # DELETE names only an id: look first, so a job that merely carries our id is spared.
        try:
            jobs = self.request("GET", f"job/{handle.job_id}").get("jobs") or []
        except RestError as exc:
            if UNKNOWN_JOB in exc.numbers:
                return
            raise
        records = [_record(job) for job in jobs]
        if not any(r.job_id == handle.job_id and r.name == handle.name for r in records):
            return
        try:
            self.request("DELETE", f"job/{handle.job_id}")
        except RestError as exc:
            if not exc.numbers & {UNKNOWN_JOB, ALREADY_DONE}:
                raise


def _record(job: dict) -> JobRecord:
    raw = job.get("exit_code")
    return JobRecord(
        job_id=str(job.get("job_id")), name=str(job.get("name") or ""),
        state=str(job.get("job_state") or ""),
        exit_code=exit_from_wait_status(raw if isinstance(raw, int) else None),
        reason=str(job.get("state_reason") or ""), submitted=job.get("submit_time"),
    )
