"""The memory and cpu limits of one local job, applied by its runner, and whether it went over.

Where the host lets the runner make a cgroup, the job gets one of its own: cgroup v2 when its
``memory`` and ``cpu`` controllers can be had, else the cgroup v1 ``memory`` and ``cpu``
hierarchies. The kernel then kills the job when it goes over ``memory_mb`` (the cgroup's OOM
counter tells afterwards) and throttles it to ``cpus``; whatever the job left running is killed
with its cgroup when it ends. The runner steps into the new cgroup only while it starts the
job, so the job and all it forks are inside and the runner's own memory is not.

On cgroup v2 the job's cgroup is made below the worker's own when that cgroup hands memory and
cpu to its children (the root of a container's cgroup namespace, or a delegated cgroup), else
beside it, in the parent that hands them to the worker's cgroup.

Elsewhere (a worker that is not root, no writable cgroup) rlimits are the fallback, weaker: each
process of the job may map at most ``memory_mb`` of address space (an allocation past it fails,
nothing is killed), and use at most ``cpus`` times the time limit in cpu seconds.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

MB = 1 << 20
CPU_PERIOD_US = 100_000
NEEDED = ("memory", "cpu")


class Limits:
    """How a job's limits are applied. Use: ``with limits.starting(): Popen(...,
    preexec_fn=limits.in_child)``, then after the job ``limits.memory_exceeded()`` and
    ``limits.end()``."""

    mechanism = "none"

    def __init__(self, memory_mb: int, cpus: float, time_limit_s: int):
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.time_limit_s = time_limit_s

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        yield

    # A preexec_fn when the limits are set in the job's own process (None keeps vfork).
    in_child: Callable[[], None] | None = None

    def memory_exceeded(self) -> bool:
        return False

    def end(self) -> None:
        """Kill what the job left running and remove what the limits made."""

    def describe(self) -> dict:
        return {"mechanism": self.mechanism, "memory_mb": self.memory_mb, "cpus": self.cpus}


class Rlimits(Limits):
    mechanism = "rlimit"

    def in_child(self) -> None:
        if self.memory_mb > 0:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory_mb * MB,) * 2)
        if self.cpus > 0 and self.time_limit_s > 0:
            seconds = math.ceil(self.cpus * self.time_limit_s)
            # SIGXCPU at the soft limit, SIGKILL a little later for a job that ignores it.
            resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 5))


class Cgroups(Limits):
    """One cgroup per hierarchy (one for v2; memory and cpu for v1), each made under
    ``parents[i]``; ``homes[i]`` is where the runner itself is, to step back to."""

    def __init__(self, version: int, parents: list[Path], homes: list[Path], name: str,
                 memory_mb: int, cpus: float, time_limit_s: int):
        super().__init__(memory_mb, cpus, time_limit_s)
        self.version = version
        self.mechanism = f"cgroup v{version}"
        self.homes = homes
        self.dirs = [parent / name for parent in parents]
        try:
            for cgroup in self.dirs:
                cgroup.mkdir(exist_ok=True)
            self._write_limits()
        except OSError:
            self.end()
            raise

    def _write_limits(self) -> None:
        quota = max(1000, int(self.cpus * CPU_PERIOD_US)) if self.cpus > 0 else None
        memory = self.memory_mb * MB if self.memory_mb > 0 else None
        if self.version == 2:
            (cgroup,) = self.dirs
            if memory:
                _write(cgroup / "memory.max", memory)
                _write(cgroup / "memory.oom.group", 1)  # an OOM ends the whole job
                with contextlib.suppress(FileNotFoundError):  # no swap accounting: no swap
                    _write(cgroup / "memory.swap.max", 0)
            if quota:
                _write(cgroup / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            return
        memory_dir, cpu_dir = self.dirs
        if memory:
            _write(memory_dir / "memory.limit_in_bytes", memory)
            with contextlib.suppress(OSError):  # memory plus swap: no more than memory
                _write(memory_dir / "memory.memsw.limit_in_bytes", memory)
        if quota:
            _write(cpu_dir / "cpu.cfs_period_us", CPU_PERIOD_US)
            _write(cpu_dir / "cpu.cfs_quota_us", quota)

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        for cgroup in self.dirs:
            _write(cgroup / "cgroup.procs", os.getpid())
        try:
            yield
        finally:
            for home in self.homes:
                _write(home / "cgroup.procs", os.getpid())

    def memory_exceeded(self) -> bool:
        counters = "memory.events" if self.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (self.dirs[0] / counters).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
        return False

    def end(self) -> None:
        for cgroup in reversed(self.dirs):
            if cgroup.is_dir():
                _empty(cgroup)
                with contextlib.suppress(OSError):
                    cgroup.rmdir()

    def describe(self) -> dict:
        return {**super().describe(), "cgroups": [str(d) for d in self.dirs]}


def for_job(name: str, memory_mb: int, cpus: float, time_limit_s: int) -> Limits:
    """The strongest limits this host lets the runner apply to a job's cgroup named ``name``:
    cgroup v2, cgroup v1, else rlimits."""
    for version, places in ((2, _v2_places), (1, _v1_places)):
        try:
            found = places()
            if found:
                parents, homes = found
                return Cgroups(version, parents, homes, name, memory_mb, cpus, time_limit_s)
        except OSError:
            continue
    return Rlimits(memory_mb, cpus, time_limit_s)


def remove(cgroups: list[str]) -> None:
    """Remove the cgroups a runner made and could not remove itself (it was killed)."""
    for cgroup in map(Path, reversed(cgroups)):
        if (cgroup / "cgroup.procs").exists():
            _empty(cgroup)
            with contextlib.suppress(OSError):
                cgroup.rmdir()


# --- where the cgroups go -----------------------------------------------------------------------


def _v2_places() -> tuple[list[Path], list[Path]] | None:
    mounts, own = _mounts(), _own_cgroups()
    if "" not in mounts or "" not in own:
        return None
    home = _inside(mounts[""], own[""])
    if home is None or not set(NEEDED) <= set(_read(home / "cgroup.controllers").split()):
        return None
    if not set(NEEDED) <= set(_read(home / "cgroup.subtree_control").split()):
        try:  # fails (EBUSY) for a cgroup with processes that is not a namespace's root
            _write(home / "cgroup.subtree_control", " ".join(f"+{c}" for c in NEEDED))
        except OSError:
            if home == mounts[""][0]:
                return None
            return [home.parent], [home]  # the parent hands memory and cpu to its children
    return [home], [home]


def _v1_places() -> tuple[list[Path], list[Path]] | None:
    mounts, own = _mounts(), _own_cgroups()
    homes = [home for c in NEEDED if c in mounts and c in own
             if (home := _inside(mounts[c], own[c])) is not None]
    if len(homes) != len(NEEDED):
        return None
    return homes, homes


def _mounts() -> dict[str, tuple[Path, str]]:
    """Each v1 controller's (and, as "", the v2) mount point and the cgroup at its root."""
    found: dict[str, tuple[Path, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[sep + 3].split(",")
        point, root = Path(fields[4].replace("\\040", " ")), fields[3]
        if fstype == "cgroup2":
            found.setdefault("", (point, root))
        elif fstype == "cgroup":
            for controller in set(options) & set(NEEDED):
                found.setdefault(controller, (point, root))
    return found


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup in each v1 controller's hierarchy, and in v2 as ""."""
    found = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if number != "0" else [""]:
            found[controller] = path
    return found


def _inside(mount: tuple[Path, str], path: str) -> Path | None:
    point, root = mount
    if root != "/" and not (path == root or path.startswith(root + "/")):
        return None
    relative = path[len(root):] if root != "/" else path
    return point / relative.lstrip("/")


def _empty(cgroup: Path) -> None:
    """Kill every process in ``cgroup`` and wait until they are gone."""
    with contextlib.suppress(OSError):
        _write(cgroup / "cgroup.kill", 1)  # v2 since Linux 5.14: all at once
    for _ in range(100):
        pids = [int(p) for p in _read(cgroup / "cgroup.procs").split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: object) -> None:
    with open(path, "w") as out:
        out.write(f"{value}\n")
