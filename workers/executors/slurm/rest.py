"""The slurm_rest target: jobs go to slurmrestd over HTTP, with a JWT for the pool's user only.

The worker needs no Slurm command, no munge key and no cluster key: only the URL and a token
for the one user its jobs run as, made where the key lives (``scontrol token username=USER
lifespan=N``) and handed to it in a file an operator renews (cron), or in ``SLURM_JWT``
(``rest_token``). The batch script, the work dir and the state table are those of the sbatch
target (the other modules of this package); the work dir must be on a file system the worker
and the compute nodes share.

slurmrestd answers HTTP 500, not 401, to an expired or refused token (error -1 when listing,
5005 "Zero Bytes were transmitted" when submitting), and 500 with error 2017 to a job it does
not know; so the token's expiry and user are checked here before it is sent, an answer that
may mean a refused token says which token it was, and "unknown job" is read from the error
number, never from the status.

Pool settings, besides those of :class:`SlurmExecutorBase` (``work_root``, ``partition``,
``account``, ``qos``, ``lost_grace_s``, ``keep_work_dir``):

- ``url``: slurmrestd's address (env ``ORCH_SLURMRESTD_URL``, ``http://127.0.0.1:6820``);
  ``api_version`` (``v0.0.38``); ``request_timeout_s`` (30).
- ``token_file``: a file holding the token (``SLURM_JWT=...`` as ``scontrol token`` prints
  it, or the bare token), not readable by every user; read again whenever it changes (env
  ``ORCH_SLURM_TOKEN_FILE``). Without it, ``SLURM_JWT`` in the worker's environment.
- ``user``: the user the token is for, sent as ``X-SLURM-USER-NAME`` (env
  ``ORCH_SLURM_USER``, default the token's own user); never root. A worker running as root
  hands that user each run dir (``chown``) when the user exists on its host.
- ``job_path``: PATH in the job's environment (``/usr/local/bin:/usr/bin:/bin``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import requests

from ...contract import JobSpec
from ..base import ExecutorError
from .base import SlurmExecutorBase, submit_error
from .batch_script import JobOptions
from .handle import Handle
from .job_user import JobUser, local_user
from .rest_token import token_for
from .settings import setting
from .states import JobRecord, exit_from_wait_status

UNKNOWN_JOB = 2017  # ESLURM_INVALID_JOB_ID: not known, or purged
ALREADY_DONE = 2021  # ESLURM_ALREADY_DONE: cancel of a job that has ended
# What slurmrestd 22.05 answers when slurmctld refuses the token: "Unspecified error" (-1) to
# a listing, "Zero Bytes were transmitted or received" (5005) to a submission or a cancel.
REFUSED_TOKEN = {-1, 5005}


class RestError(ExecutorError):
    """slurmrestd answered with errors; ``numbers`` holds their Slurm error numbers."""

    def __init__(self, status: int, errors: list[dict], text: str = "", hint: str = ""):
        self.status = status
        numbered = [(e, e.get("error_number", e.get("error_code"))) for e in errors]
        self.numbers = {number for _, number in numbered}  # error_code in submit answers
        words = "; ".join(f"{e.get('description') or e.get('error')} ({n})" for e, n in numbered)
        super().__init__(f"slurmrestd answered HTTP {status}: {words or text[:300]}{hint}")


class SlurmRestExecutor(SlurmExecutorBase):
    target = "slurm_rest"

    def __init__(self, pool: str, settings: dict[str, Any] | None = None):
        super().__init__(pool, settings)
        s = self.settings
        self.url = str(setting(s, "url", "ORCH_SLURMRESTD_URL", "http://127.0.0.1:6820"))
        self.url = self.url.rstrip("/")
        self.api_version = str(setting(s, "api_version", default="v0.0.38"))
        self.timeout = float(setting(s, "request_timeout_s", default=30))
        self.tokens = token_for(setting(s, "token_file", "ORCH_SLURM_TOKEN_FILE"))

    @property
    def user(self) -> str:
        return self._identity()[0]

    def _identity(self) -> tuple[str, str, dict[str, Any]]:
        """(user, token, claims): the user is ``settings.user``, which the token must name, or
        the token's own. Raises ExecutorError for root, a retired setting or another user's
        token."""
        for retired in ("jwt_key", "token_lifespan_s"):
            if self.settings.get(retired) not in (None, ""):
                raise ExecutorError(
                    f"settings.{retired} is no longer read: the worker holds no cluster key; "
                    "give the pool a token for its user only (settings.token_file or SLURM_JWT)",
                    permanent=True)
        token, claims = self.tokens.get()
        named = setting(self.settings, "user", "ORCH_SLURM_USER")
        if named in (None, ""):
            return claims["sun"], token, claims
        if str(named) == "root":
            raise ExecutorError("settings.user: root; Slurm jobs never run as root",
                                permanent=True)
        if str(named) != claims["sun"]:
            raise ExecutorError(f"settings.user is {named!r} but the token in "
                                f"{self.tokens.where} is for {claims['sun']!r}: give the pool "
                                f"a token for {named}", permanent=True)
        return str(named), token, claims

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One call to slurmrestd (``path`` under ``/slurm/<api_version>/``): its JSON answer.
        Raises RestError when Slurm reports errors, ExecutorError when it cannot be reached."""
        user, token, claims = self._identity()
        headers = {"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": token}
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
            numbers = {e.get("error_number", e.get("error_code")) for e in errors}
            hint = ""
            if errors and numbers <= REFUSED_TOKEN:
                expires = time.strftime("%Y-%m-%d %H:%M:%S",
                                        time.localtime(claims.get("exp") or 0))
                hint = (f" (what slurmrestd answers when slurmctld refuses the token: check "
                        f"the token in {self.tokens.where}, for {user}, expiring {expires})")
            raise RestError(answer.status_code, errors, answer.text, hint)
        return data

    def job_owner(self) -> JobUser | None:
        if os.geteuid() != 0:
            return None  # the worker is the token's user: the run dirs are its own
        return local_user(self.user)  # None: not a local user, the shared file system maps it

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
        except ExecutorError as exc:  # permanent stays permanent: a root token stays refused
            raise ExecutorError(f"listing jobs failed, deciding nothing: {exc}",
                                permanent=exc.permanent) from None
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
