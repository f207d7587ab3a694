"""Who a local job runs as: the pool's ``job_user`` setting, made real on the worker's host.

- ``dynamic`` (the default): each job gets a uid of its own (gid the same, no supplementary
  groups), leased from the pool's ``job_uids`` range for as long as its work dir exists, like
  systemd's DynamicUser. No two jobs on this host share one, so a job can read neither the
  worker's files nor its siblings'. Leases are files in a host-wide directory, so pools with
  different work roots still never hand out one uid twice.
- a user name or ``uid[:gid]``: one unprivileged user the deploy made. It keeps jobs from the
  worker, not from each other (they share the uid).
- ``worker``: the worker's own user (jobs can read whatever the worker can); refused for a
  worker running as root.

Root is never a job's user, whatever the setting. Switching users needs a worker running as
root; any other worker runs its jobs as itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import ExecutorError

# 64 Ki uids above systemd's container range and below its "foreign" one: unused by
# systemd, nspawn, Podman's default subuids and useradd.
DEFAULT_JOB_UIDS = "1879048192-1879113727"
LEASES = Path("/run/orchestration/job-uids")


@dataclass(frozen=True)
class JobUser:
    """The uid and gid a job runs as; ``dynamic`` when the uid is leased to this job alone."""

    uid: int
    gid: int
    dynamic: bool = False

    @property
    def is_worker(self) -> bool:
        return self.uid == os.geteuid()

    def __str__(self) -> str:
        return f"{self.uid}:{self.gid}"


def can_switch_users() -> bool:
    return os.geteuid() == 0


def job_user(settings: dict[str, Any], job_dir: Path) -> JobUser:
    """Make ``job_dir`` (mode 0700) and return the user the job in it runs as, owner of it.
    A dynamic uid is leased here, under the leases' lock, in the same step that gives the
    directory to it: the directory owned by the uid is what keeps the lease."""
    wanted = str(settings.get("job_user") or "dynamic")
    if not can_switch_users():
        _own_user_only(wanted)
        user = JobUser(os.geteuid(), os.getegid())
    elif wanted == "dynamic":
        return _lease(_uid_range(settings), job_dir)
    elif wanted == "worker":
        raise ExecutorError("settings.job_user: 'worker' would run jobs as root (the worker's "
                            "user); choose dynamic or an unprivileged user", permanent=True)
    else:
        user = _named(wanted)
    job_dir.mkdir(mode=0o700)
    give(job_dir, user)
    return user


def give(path: Path, user: JobUser) -> None:
    """``path`` owned by the job's user (a no-op for a job that runs as the worker)."""
    if not user.is_worker:
        os.chown(path, user.uid, user.gid, follow_symlinks=False)


def end_lease(job_dir: Path, uid: int) -> None:
    """Give ``uid`` back once ``job_dir``, the last thing it owned, is gone."""
    with _leases_locked():
        lease = LEASES / str(uid)
        with contextlib.suppress(FileNotFoundError):
            if lease.read_text() == str(job_dir):
                lease.unlink()


def kill_every_process_of(user: JobUser) -> None:
    """SIGKILL whatever still runs as a dynamic uid once its job ended (a daemon it left
    behind). kill(-1) from a child that became the uid reaches exactly its processes."""
    if not user.dynamic:
        return  # a shared user's processes may be other jobs
    child = os.fork()
    if child == 0:
        try:
            os.setgroups([])
            os.setgid(user.gid)
            os.setuid(user.uid)
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    os.waitpid(child, 0)


def unreachable_ancestor(path: Path, user: JobUser) -> Path | None:
    """The first directory above ``path`` that ``user`` may not pass through, or None."""
    if user.is_worker or user.uid == 0:
        return None
    for parent in reversed(path.parents):
        st = parent.stat()
        bit = 0o100 if st.st_uid == user.uid else 0o010 if st.st_gid == user.gid else 0o001
        if not st.st_mode & bit:
            return parent
    return None


def _own_user_only(wanted: str) -> None:
    """A worker that is not root runs jobs as itself: a setting naming anyone else fails."""
    if wanted in ("dynamic", "worker"):
        return
    me = os.geteuid()
    if wanted.split(":")[0] not in (str(me), _name_of(me)):
        raise ExecutorError(f"settings.job_user: {wanted!r} needs a worker running as root "
                            f"(this one runs as uid {me})", permanent=True)


def _named(wanted: str) -> JobUser:
    """A user name or ``uid[:gid]``; the gid of a bare name or uid is its passwd entry's."""
    name, _, group = wanted.partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        if not name.isdigit():
            raise ExecutorError(f"settings.job_user: no user {name!r} on this host (the deploy "
                                "creates it)", permanent=True) from None
        uid = gid = int(name)
    if group:
        gid = int(group)
    if uid == 0 or gid == 0:
        raise ExecutorError(f"settings.job_user: {wanted!r} is root; local jobs never run as "
                            "root", permanent=True)
    return JobUser(uid, gid)


def _uid_range(settings: dict[str, Any]) -> range:
    text = str(settings.get("job_uids") or DEFAULT_JOB_UIDS)
    first, _, last = text.partition("-")
    if not (first.isdigit() and last.isdigit() and 0 < int(first) <= int(last)):
        raise ExecutorError(f"settings.job_uids: must be FIRST-LAST, not {text!r}",
                            permanent=True)
    return range(int(first), int(last) + 1)


def _lease(uids: range, job_dir: Path) -> JobUser:
    """A uid of ``uids`` that no process runs as, no account names and no lease holds; the
    search starts at a random place so a uid given back is not the next one handed out."""
    with _leases_locked():
        busy = _uids_of_processes()
        _forget_stale_leases(busy)
        start = secrets.randbelow(len(uids))
        for step in range(len(uids)):
            uid = uids[(start + step) % len(uids)]
            if uid in busy or _is_account(uid) or _leased(uid):
                continue
            job_dir.mkdir(mode=0o700)
            os.chown(job_dir, uid, uid)
            lease = LEASES / str(uid)
            lease.write_text(str(job_dir))
            return JobUser(uid, uid, dynamic=True)
    raise ExecutorError(f"settings.job_uids: every uid of {uids.start}-{uids.stop - 1} is "
                        "taken by a running or unreleased job")


def _forget_stale_leases(busy: set[int]) -> None:
    for lease in LEASES.iterdir():
        if lease.name.isdigit() and int(lease.name) not in busy and not _leased(int(lease.name)):
            lease.unlink(missing_ok=True)


def _leased(uid: int) -> bool:
    """True while the uid's lease names a directory the uid still owns (a lease whose
    directory is gone was never given back: its job's worker died before releasing it)."""
    try:
        holder = Path((LEASES / str(uid)).read_text())
        return holder.lstat().st_uid == uid
    except (FileNotFoundError, ValueError):
        return False


@contextlib.contextmanager
def _leases_locked() -> Iterator[None]:
    LEASES.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(LEASES / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _uids_of_processes() -> set[int]:
    uids: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("Uid:"):
                    uids.update(int(field) for field in line.split()[1:])
                    break
    return uids


def _is_account(uid: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


def _name_of(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
