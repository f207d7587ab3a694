"""The pool settings each target reads, with their types: the allow-list a pool file's
``settings:`` is checked against when it loads (``apps/pipelines/definitions.py``).

It lives in the worker package, beside the executors that read the settings, so a setting an
executor starts to read is added here in the same change, and a worker can check what it is
sent against the same list. Every key the executors read (``self.settings``, ``setting(...)``)
is listed; any other key is refused. ``null`` is accepted everywhere and means "unset" (the
executor's default applies; for ECS ``log_reads_per_poll`` it means no limit).

URL and host settings are checked for form (scheme, host, no credentials, query or fragment):
they decide where a worker sends a run's container, batch script or secrets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .executors.slurm.rest_versions import VERSIONS as _REST_VERSIONS

REST_API_VERSIONS = tuple(_REST_VERSIONS)

# A check returns None when the value is fine, else what the value should be.
Check = Callable[[Any], "str | None"]


def text(pattern: str, what: str) -> Check:
    regex = re.compile(pattern)
    return lambda v: None if isinstance(v, str) and regex.fullmatch(v) else what


def number(minimum: float = 0, whole: bool = False) -> Check:
    what = f"{'a whole number' if whole else 'a number'} of at least {minimum}"
    kinds = int if whole else int | float
    # bool is an int to Python; `true` is never meant as a count.
    return lambda v: (None if isinstance(v, kinds) and not isinstance(v, bool) and v >= minimum
                      else what)


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def one_of(*values: str) -> Check:
    return lambda v: None if v in values else f"one of {', '.join(values)}"


def url(*schemes: str, user_for: tuple[str, ...] = ()) -> Check:
    """A URL of one of ``schemes``: a host (or, for unix, an absolute socket path), no
    password, query or fragment; a user name only for the schemes in ``user_for`` (ssh)."""
    what = f"a URL ({' or '.join(s + '://' for s in schemes)}) with no credentials or query"

    def check(v: Any) -> str | None:
        if not isinstance(v, str) or re.search(r"[\s\x00-\x1f\x7f]", v):
            return what
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018 -- raises on a port that is not a number
        except ValueError:
            return what
        if parts.scheme not in schemes or parts.query or parts.fragment or parts.password:
            return what
        if parts.username and parts.scheme not in user_for:
            return what
        if parts.scheme == "unix":
            return None if not parts.netloc and parts.path.startswith("/") else what
        return None if parts.hostname else what

    return check


def strings(pattern: str, what: str) -> Check:
    item = text(pattern, what)
    return lambda v: (None if isinstance(v, list) and not any(map(item, v))
                      else f"a list of {what}")


def strategy(v: Any) -> str | None:
    """ECS capacity_provider_strategy: ``[{capacity_provider, weight, base}]`` (ecs/pool.py also
    reads the API's spelling ``capacityProvider``)."""
    what = "a list of {capacity_provider: NAME, weight: N, base: N}"
    if not isinstance(v, list):
        return what
    for item in v:
        keys = {"capacity_provider", "capacityProvider", "weight", "base"}
        if not isinstance(item, dict) or set(item) - keys:
            return what
        provider = item.get("capacity_provider") or item.get("capacityProvider")
        if text(r"[A-Za-z0-9_-]{1,255}", "")(provider):
            return what
        if any(number(0, whole=True)(item[k]) for k in ("weight", "base") if k in item):
            return what
    return None


PATH = text(r"[^\x00-\x1f\x7f]{1,4096}", "a file system path")
# Slurm paths go into #SBATCH lines: the characters slurm.run_dirs.SAFE_PATH allows.
SLURM_PATH = text(r"[A-Za-z0-9_./@+,=-]{1,4096}", "a path of letters, digits and _ . / @ + , = -")
SLURM_NAME = text(r"[A-Za-z0-9_.,:@+=-]{1,200}", "a Slurm name")  # slurm.batch_script.SETTING_VALUE
USER = text(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", "a user name")
SECONDS = number(0)
POSITIVE = number(0.001)


def local_job_user(v: Any) -> str | None:
    """Local ``job_user``: dynamic, worker, a user name or uid[:gid]; never root."""
    what = "dynamic, worker, a user name or a uid[:gid] other than root"
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}|\d+(:\d+)?", v):
        return what
    if v == "root" or (v[0].isdigit() and 0 in (int(x) for x in v.split(":"))):
        return what
    return None


def local_uid_range(v: Any) -> str | None:
    """Local ``job_uids``: FIRST-LAST, clear of system users and of nobody/-1."""
    what = "a uid range FIRST-LAST, from 1000 up to 4294967294"
    found = re.fullmatch(r"(\d+)-(\d+)", v) if isinstance(v, str) else None
    if not found or not 1000 <= int(found[1]) <= int(found[2]) <= 4294967294:
        return what
    return None


def slurm_user(v: Any) -> str | None:
    """The user a Slurm pool's jobs run as: a user name or uid, never root (the executors also
    refuse any name that resolves to uid 0)."""
    what = "a user name or uid other than root (such as orch-slurm)"
    return what if USER(v) or v == "root" or (v.isdigit() and int(v) == 0) else None


# How a pool's workers reach datasets and outputs: "store" (default: ORCH_STORAGE_URL, a shared
# path or the bucket) or "url" (signed URLs the control plane serves, for a worker that
# reaches neither, e.g. a Slurm submission node).
DATA_ACCESS = one_of("store", "url")

SLURM_COMMON: dict[str, Check] = {
    "data_access": DATA_ACCESS,
    "work_root": SLURM_PATH,
    "partition": SLURM_NAME,
    "account": SLURM_NAME,
    "qos": SLURM_NAME,
    "lost_grace_s": SECONDS,
    "keep_work_dir": boolean,
}

ALLOWED: dict[str, dict[str, Check]] = {
    "local": {
        "work_root": PATH,
        # Who jobs run as (executors/local_users.py): "dynamic" (default: a uid of its own
        # for each job, from job_uids), a user the deploy made, or "worker" (unsafe: the
        # worker's own user, refused for a root worker). Never root.
        "job_user": local_job_user,
        "job_uids": local_uid_range,
        "keep_work_dir": boolean,
        "data_access": DATA_ACCESS,
    },
    "docker": {
        "docker_host": url("unix", "tcp", "ssh", "http", "https", user_for=("ssh",)),
        "api_version": text(r"auto|\d+\.\d+", "auto or an API version such as 1.41"),
        "api_timeout_s": POSITIVE,
        "work_root": PATH,
        "pull": one_of("missing", "never"),
        "network": text(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", "a network name (none, bridge)"),
        "stop_grace_s": SECONDS,
        "orphan_grace_s": SECONDS,
        "keep_work_dir": boolean,
        # Who the container runs as ("65534:65534" or "name:group"), and whether a pipeline
        # may ask for root in this pool.
        # Numeric: the worker chowns the job's work dir to it before the container starts.
        "user": text(r"\d+(:\d+)?", "a uid or uid:gid such as 65534:65534"),
        "allow_root": boolean,
        "data_access": DATA_ACCESS,
        # Logs of running containers read per poll where their log files are out of reach.
        "log_reads_per_poll": number(0, whole=True),
    },
    "slurm": {
        **SLURM_COMMON,
        # Who sbatch and scancel run as when the worker is root (a non-root worker submits as
        # itself).
        "user": slurm_user,
        "accounting": one_of("jobcomp", "slurmdbd", "none"),
        "command_timeout_s": POSITIVE,
        # Where sbatch, squeue, scancel and sacct are (default: PATH).
        "bin_dir": text(r"/[A-Za-z0-9_./+-]*", "an absolute directory path"),
    },
    "slurm_rest": {
        **SLURM_COMMON,
        "url": url("http", "https"),
        # Pins the slurmrestd API version; unset, the newest the daemon serves and we know.
        "api_version": one_of(*REST_API_VERSIONS),
        "request_timeout_s": POSITIVE,
        # The user the token is for (default: the token's own); a file holding that token,
        # re-read when it changes, so no cluster key is needed on the worker.
        "user": slurm_user,
        "token_file": PATH,
        "job_path": text(r"/[A-Za-z0-9_./+-]*(:/[A-Za-z0-9_./+-]*)*", "absolute paths joined by :"),
    },
    "ecs": {
        "cluster": text(r"[A-Za-z0-9_:/.-]{1,255}", "a cluster name or ARN"),
        "region": text(r"[a-z]{2}(-[a-z]+)+-\d{1,2}", "an AWS region such as eu-west-1"),
        "endpoint_url": url("http", "https"),
        "launch_type": one_of("FARGATE", "EC2", "EXTERNAL"),
        "capacity_provider_strategy": strategy,
        "subnets": strings(r"[A-Za-z0-9-]{1,255}", "subnet ids"),
        "security_groups": strings(r"[A-Za-z0-9-]{1,255}", "security group ids"),
        "assign_public_ip": one_of("ENABLED", "DISABLED"),
        "network_mode": one_of("awsvpc", "bridge", "host", "none"),
        "execution_role_arn": text(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}",
                                   "an IAM role ARN"),
        "task_role_arn": text(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}",
                              "an IAM role ARN"),
        "log_group": text(r"[\w./#-]{1,512}", "a CloudWatch log group name"),
        "log_stream_prefix": text(r"[^:*\x00-\x1f\x7f]{1,512}", "a log stream prefix"),
        "create_log_group": boolean,
        "platform_version": text(r"LATEST|\d+\.\d+\.\d+", "LATEST or a version such as 1.4.0"),
        "family_prefix": text(r"[A-Za-z0-9_-]{0,200}", "letters, digits, _ and -"),
        "container_name": text(r"[A-Za-z0-9_-]{1,255}", "letters, digits, _ and -"),
        "max_attempts": number(1, whole=True),
        "poll_attempts": number(1, whole=True),
        "log_reads_per_poll": number(0, whole=True),
        "log_settle_s": SECONDS,
        "stage_image": text(r"[\w./:@-]{1,512}", "an image name"),
    },
}


# Settings a target no longer reads, and what to use instead.
RETIRED: dict[str, dict[str, str]] = {
    "slurm_rest": {
        "jwt_key": "a worker holds no cluster key any more; give the pool a token for its "
                   "user only: token_file (a file holding the output of `scontrol token "
                   "username=USER lifespan=N`) or SLURM_JWT in the worker's environment",
        "token_lifespan_s": "the worker mints no tokens any more; a token's lifespan is "
                            "chosen where it is made (`scontrol token lifespan=N`)",
    },
}


def settings_errors(target: str, settings: dict[str, Any]) -> list[str]:
    """Every problem of a pool's ``settings`` for ``target``, each naming its setting."""
    allowed = ALLOWED.get(target, {})
    errors = []
    for key, value in settings.items():
        check = allowed.get(key)
        if instead := RETIRED.get(target, {}).get(key):
            errors.append(f"settings.{key}: no longer read: {instead}")
        elif check is None:
            errors.append(f"settings.{key}: not a setting of target {target} (allowed: "
                          f"{', '.join(sorted(allowed)) or 'none'})")
        elif value is not None and (what := check(value)):
            errors.append(f"settings.{key}: must be {what}, not {value!r}")
    return errors
