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
  ``request_timeout_s`` (30).
- ``api_version``: the slurmrestd API version to speak (v0.0.38 ... v0.0.44). Unset (the
  default), the newest one the daemon serves and this worker knows, read from its OpenAPI
  document (``rest_versions``); set, that one, refused unless the daemon serves it.
- ``token_file``: a file holding the token (``SLURM_JWT=...`` as ``scontrol token`` prints
  it, or the bare token), not readable by every user; read again whenever it changes (env
  ``ORCH_SLURM_TOKEN_FILE``). Without it, ``SLURM_JWT`` in the worker's environment.
- ``user``: the user the token is for, sent as ``X-SLURM-USER-NAME`` (env
  ``ORCH_SLURM_USER``, default the token's own user); never root. A worker running as root
  hands that user each run dir (``chown``) when the user exists on its host.
- ``job_path``: PATH in the job's environment (``/usr/local/bin:/usr/bin:/bin``).
"""

from __future__ import annotations

import logging
import os
import threading
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
from .rest_versions import NoCommonVersion, RestVersion, choose, served_versions
from .sbatch_render import rest_fields
from .settings import setting
from .states import JobRecord

log = logging.getLogger(__name__)

UNKNOWN_JOB = 2017  # ESLURM_INVALID_JOB_ID: not known, or purged
ALREADY_DONE = 2021  # ESLURM_ALREADY_DONE: cancel of a job that has ended
# Errors slurmctld answers a submission with while it queues the job all the same, to wait
# (job_allocate's "not fatal, but can't be scheduled right now"): 23.02's slurmrestd and later
# take these as a submission with a warning, 22.05's answers them as errors beside the job
# id. Seen when a node is briefly down after slurmctld restarts (NODE_NOT_AVAIL).
QUEUED_ALL_THE_SAME = {
    2015,  # ESLURM_REQUESTED_PART_CONFIG_UNAVAILABLE
    2016,  # ESLURM_NODES_BUSY
    2042,  # ESLURM_JOB_HELD
    2050,  # ESLURM_ACCOUNTING_POLICY
    2055,  # ESLURM_RESERVATION_BUSY
    2056,  # ESLURM_RESERVATION_NOT_USABLE
    2059,  # ESLURM_PORTS_BUSY
    2068,  # ESLURM_NODE_NOT_AVAIL: "Required node not available (down, drained or reserved)"
    2074,  # ESLURM_QOS_THRES
    2100,  # ESLURM_BURST_BUFFER_WAIT
    2101,  # ESLURM_PARTITION_DOWN
}
# HTTP statuses that say the token was refused (24.11: 401 without the headers' user, 511
# with error 1007 when slurmctld refuses it); the error numbers are each version's
# (``rest_versions.RestVersion.refused_token``).
REFUSED_STATUS = {401, 511}
NEGOTIATED_FOR_S = 300  # how long the version read from a daemon is trusted without asking again


class RestError(ExecutorError):
    """slurmrestd answered with errors; ``numbers`` holds their Slurm error numbers."""

    def __init__(self, status: int, errors: list[dict], text: str = "", hint: str = "",
                 job_id: Any = None):
        self.status = status
        # A job the daemon made all the same (24.11's v0.0.41 and later do, without a field
        # they could not read): the submitter must not leave it running.
        self.job_id = str(job_id) if str(job_id or "").isdigit() else None
        numbered = [(e, e.get("error_number", e.get("error_code"))) for e in errors]
        self.numbers = {number for _, number in numbered}  # error_code in submit answers
        words = "; ".join(f"{_said(e)} ({n})" for e, n in numbered)
        super().__init__(f"slurmrestd answered HTTP {status}: {words or text[:300]}{hint}")


def _said(error: dict) -> str:
    """An error's words: 22.05 puts the specific ones in ``description``, 24.11 in ``error``
    (``Batch job submission failed: Invalid partition name specified``)."""
    words = [str(error[k]) for k in ("description", "error") if error.get(k)]
    return ": ".join(dict.fromkeys(words))


class SlurmRestExecutor(SlurmExecutorBase):
    target = "slurm_rest"

    def __init__(self, pool: str, settings: dict[str, Any] | None = None):
        super().__init__(pool, settings)
        s = self.settings
        self.url = str(setting(s, "url", "ORCH_SLURMRESTD_URL", "http://127.0.0.1:6820"))
        self.url = self.url.rstrip("/")
        self.pinned = setting(s, "api_version")
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

    def _headers(self) -> tuple[dict[str, str], str, dict[str, Any]]:
        user, token, claims = self._identity()
        return {"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": token}, user, claims

    @property
    def version(self) -> RestVersion:
        """The API version spoken to this daemon: negotiated once per NEGOTIATED_FOR_S and
        process. Raises a permanent ExecutorError naming what the daemon serves when it
        serves no version this worker knows (or not the pinned one)."""
        key = (self.url, str(self.pinned or ""))
        with _NEGOTIATED_LOCK:
            known = _NEGOTIATED.get(key)
        if known is not None and time.monotonic() - known[0] < NEGOTIATED_FOR_S:
            return known[1]
        try:
            version = choose(self.served_versions(), str(self.pinned) if self.pinned else None)
        except NoCommonVersion as exc:
            raise ExecutorError(f"slurmrestd at {self.url}: {exc}", permanent=True) from None
        with _NEGOTIATED_LOCK:
            _NEGOTIATED[key] = (time.monotonic(), version)
        return version

    def served_versions(self) -> list[str]:
        """The slurmctld API versions the daemon's OpenAPI document lists (24.11 answers it
        only to an authenticated request)."""
        headers, user, claims = self._headers()
        try:
            answer = requests.get(f"{self.url}/openapi/v3", headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ExecutorError(f"slurmrestd at {self.url} did not answer: {exc}") from None
        if answer.status_code != 200:
            hint = (self._token_hint(user, claims) if answer.status_code in REFUSED_STATUS
                    else "")
            raise ExecutorError(f"slurmrestd at {self.url} answered HTTP {answer.status_code} "
                                f"to GET /openapi/v3: {answer.text[:200]}{hint}")
        try:
            return served_versions(answer.json())
        except ValueError:
            raise ExecutorError(f"slurmrestd at {self.url} answered GET /openapi/v3 with no "
                                f"JSON: {answer.text[:200]}") from None

    def forget_version(self) -> None:
        with _NEGOTIATED_LOCK:
            _NEGOTIATED.pop((self.url, str(self.pinned or "")), None)

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One call to slurmrestd (``path`` under ``/slurm/<version>/``): its JSON answer.
        Raises RestError when Slurm reports errors, ExecutorError when it cannot be reached."""
        headers, user, claims = self._headers()
        version = self.version
        url = f"{self.url}/slurm/{version.name}/{path}"
        try:
            answer = requests.request(method, url, json=body, headers=headers,
                                      timeout=self.timeout)
        except requests.RequestException as exc:
            raise ExecutorError(f"slurmrestd at {self.url} did not answer: {exc}") from None
        try:
            data = answer.json()
        except ValueError:
            if answer.status_code == 404:  # no such path: the daemon changed its versions
                self.forget_version()
            # 24.11 answers a refused token with HTTP 401 and no JSON.
            hint = self._token_hint(user, claims) if answer.status_code in REFUSED_STATUS else ""
            raise RestError(answer.status_code, [], answer.text, hint) from None
        errors = data.get("errors") or []
        if method == "DELETE":
            errors = errors + version.cancel_errors(data)
        if answer.status_code >= 400 or errors:
            numbers = {e.get("error_number", e.get("error_code")) for e in errors}
            refused = ((errors and numbers <= version.refused_token)
                       or answer.status_code in REFUSED_STATUS)
            hint = self._token_hint(user, claims) if refused else ""
            raise RestError(answer.status_code, errors, answer.text, hint, data.get("job_id"))
        return data

    def _token_hint(self, user: str, claims: dict[str, Any]) -> str:
        expires = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(claims.get("exp") or 0))
        return (f" (what slurmrestd answers when slurmctld refuses the token: check the token "
                f"in {self.tokens.where}, for {user}, expiring {expires})")

    def cluster_health(self) -> dict[str, Any]:
        """Whether slurmrestd answers (its ping) and the API version in use, for the
        worker's heartbeat."""
        try:
            self.forget_version()  # read again: a daemon upgraded under the worker shows
            version = self.version
            self.request("GET", "ping")
        except ExecutorError as exc:
            return {"reachable": False, "rest_api_version": None, "detail": str(exc)}
        return {"reachable": True, "rest_api_version": version.name,
                "detail": f"slurmrestd at {self.url} answers; {version.name} in use"}

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
        version = self.version
        return [_record(job, version) for job in jobs if job.get("name") in wanted]

    def ended_jobs(self, handles: list[Handle]) -> list[JobRecord]:
        return []  # no accounting through slurmrestd without slurmdbd: the exit-code file tells

    def submit_job(self, spec: JobSpec, options: JobOptions, script: str, env: dict) -> str:
        version = self.version  # a daemon serving no version we know: a permanent error
        try:
            answer = self.request("POST", version.submit_path,
                                  version.submit_body(job_description(options, env), script))
        except RestError as exc:
            if exc.job_id is None:
                raise submit_error(str(exc)) from None
            if exc.status < 400 and exc.numbers and exc.numbers <= QUEUED_ALL_THE_SAME:
                log.info("job %s queued to wait: %s", exc.job_id, exc)
                return exc.job_id
            # Refused, yet submitted without what it could not read: not the job asked for,
            # and one nobody would follow. Cancel it.
            try:
                self.request("DELETE", version.job_path.format(job_id=exc.job_id))
                fate = "cancelled"
            except ExecutorError as cancel:
                fate = f"cancelling it failed: {cancel}"
            raise ExecutorError(f"Slurm refused the job: {exc} (slurmrestd made it job "
                                f"{exc.job_id} all the same; {fate})", permanent=True) from None
        job_id = str(answer.get("job_id", ""))
        if not job_id.isdigit():
            raise ExecutorError(f"slurmrestd gave no job id: {answer}")
        return job_id

    def cancel_job(self, handle: Handle) -> None:
        # DELETE names only an id: look first, so a job that merely carries our id is spared.
        version = self.version
        path = version.job_path.format(job_id=handle.job_id)
        try:
            jobs = self.request("GET", path).get("jobs") or []
        except RestError as exc:
            if UNKNOWN_JOB in exc.numbers:
                return
            raise
        records = [_record(job, version) for job in jobs]
        if not any(r.job_id == handle.job_id and r.name == handle.name for r in records):
            return
        try:
            self.request("DELETE", path)
        except RestError as exc:
            if not exc.numbers & {UNKNOWN_JOB, ALREADY_DONE}:
                raise


_NEGOTIATED: dict[tuple[str, str], tuple[float, RestVersion]] = {}
_NEGOTIATED_LOCK = threading.Lock()


def job_description(options: JobOptions, env: dict) -> dict[str, Any]:
    """The job as slurmrestd is told of it, in neutral (v0.0.38) names: each version's table
    (``rest_versions``) maps them to its own."""
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
    # The sbatch options (constraint, nodes, mail, chdir, export rules...) as fields.
    job.update(rest_fields(options.sbatch, gpus=options.gpus, environment=env))
    return job


def _record(job: dict, version: RestVersion) -> JobRecord:
    submitted = version.submit_time(job.get("submit_time"))
    return JobRecord(
        job_id=str(job.get("job_id")), name=str(job.get("name") or ""),
        state=version.job_state(job.get("job_state")),
        exit_code=version.exit_code(job.get("exit_code")),
        reason=str(job.get("state_reason") or ""),
        submitted=float(submitted) if submitted is not None else None,
    )
