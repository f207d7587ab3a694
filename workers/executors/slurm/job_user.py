"""Who Slurm jobs run as: never root.

A worker that runs as root hands each run dir and its files to the jobs' user
(:class:`JobUser`) and, on the sbatch target, runs sbatch and scancel as that user; a worker
that is not root submits as itself. From the hand-over on, the run dir is the job's: see
``run_dirs`` for how the worker still reads and writes there safely.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..base import ExecutorError


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


# Work roots a job user was seen to reach, so the check costs one process per root, not per job.
_REACHABLE: set[tuple[str, int]] = set()


def check_reachable(root: Path, user: JobUser) -> None:
    """Fail (permanently, naming ``work_root``) when ``user`` cannot search ``root``: every
    directory on its path must let the user through, or its jobs could not even start."""
    if (str(root), user.uid) in _REACHABLE:
        return
    # `test` by name, on the worker's PATH as sbatch and squeue are; run as the job's user,
    # since only a process of that user can tell what it may search.
    done = subprocess.run(["test", "-x", str(root)],  # noqa: S607
                          user=user.uid, group=user.gid, extra_groups=user.groups,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                          check=False)
    if done.returncode != 0:
        raise ExecutorError(
            f"settings.work_root: {root} is out of reach of {user.name}, the user Slurm jobs "
            "run as: every directory on its path must be searchable by that user (chmod o+x), "
            "or choose a work_root elsewhere", permanent=True)
    _REACHABLE.add((str(root), user.uid))
