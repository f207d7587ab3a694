"""What a job's container may do: the user it runs as (never root unless its pool allows it)
and the options that keep it from the host (no capabilities, no new privileges, a read-only
root, nosuid mounts). The Docker executor applies them to every container it creates."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ...contract import JobSpec
from ..base import ExecutorError

DEFAULT_USER = "65534:65534"  # nobody:nogroup
ROOT = "0:0"
# Mount options of the run dir's binds (Podman only) and of the /tmp tmpfs.
MOUNT_HARDENING = "nosuid,nodev"


def job_user(spec: JobSpec, pool: str, settings: dict[str, Any]) -> str:
    """The ``uid:gid`` the container runs as. Root only when the pipeline asks for it
    (``run.user: root``) and the pool allows it; never by default."""
    wanted = spec.user  # the pipeline's run.user: "root" or ""
    if wanted and wanted != "root":
        raise ExecutorError(f"run.user may only be 'root', not {wanted!r}: the pool "
                            "decides which user jobs run as", permanent=True)
    pool_user = str(settings.get("user") or DEFAULT_USER)
    if not re.fullmatch(r"\d+(:\d+)?", pool_user):
        raise ExecutorError(f"pool {pool}: setting user must be a numeric uid:gid, "
                            f"not {pool_user!r}", permanent=True)
    user = ROOT if wanted else pool_user if ":" in pool_user else f"{pool_user}:{pool_user}"
    if user.split(":")[0] == "0" and not settings.get("allow_root"):
        who = f"pipeline {spec.pipeline} asks" if wanted else f"pool setting user {user!r} says"
        raise ExecutorError(f"{who} to run as root, and pool {pool} does not allow it "
                            "(allow_root is false)", permanent=True)
    if os.geteuid() != 0 and user != ROOT:
        # A worker that is not root cannot give the work dir to another uid: its jobs run as
        # the worker's own user instead (never a world-writable dir).
        user = f"{os.getuid()}:{os.getgid()}"
    return user


def give_work_dir(work: Path, user: str) -> None:
    """The job's work dir, writable by the job's user alone."""
    if os.geteuid() == 0:
        uid, gid = (int(part) for part in user.split(":"))
        os.chown(work, uid, gid)
    work.chmod(0o700)


def bind_mode(mode: str, is_podman: bool) -> str:
    """A bind's mode. Docker refuses nosuid,nodev on a bind (only a host mount of work_root
    gives them); inside the container no-new-privileges and no capabilities make setuid inert
    anyway."""
    return f"{mode},{MOUNT_HARDENING}" if is_podman else mode


def host_options() -> dict[str, Any]:
    """The host-config options every job container gets."""
    return {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],  # the form both Docker and Podman take
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,{MOUNT_HARDENING}"},  # noqa: S108 - the container's own /tmp
    }
