"""A host that never comes back (issue 18), on the real stack: two workers of the local pool
standing for two hosts (``ORCH_WORKER_HOST``, each with its own work root), runs on both, then
one host dies for good (its worker and its jobs SIGKILLed). Past the pool's
``host_lost_after`` its processes end LOST with "host X silent since T"; the other host's run
to their end and succeed."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from apps.pipelines.models import Pool
from apps.pipelines.services import pipelines_load
from apps.processes.models import Process
from tests.e2e import stack
from tests.e2e.client import PROCESSES, logs_of, post_process, wait_for_end
from tests.e2e.stack import wait_until
from tests.work_roots import reachable_work_root
from workers.contract import State, host_queue

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

HOSTS = ("hosta", "hostb")
DEAD, ALIVE = HOSTS
LOST_AFTER_S = 5
JOB_S = 12
LOCAL_POOL = f"""
name: local
target: local
capacity: 16
queued_limit: 10m
host_lost_after: {LOST_AFTER_S}s
settings: {{}}
"""


def jobs_in(root: Path) -> list[int]:
    """The live processes of the jobs under a work root (their runners and what they ran)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(root) in cmdline or cwd.startswith(str(root)):
            found.append(int(entry.name))
    return found


def kill_jobs(root: Path) -> None:
    for pid in jobs_in(root):  # the jobs this test's worker started, by pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def all_killed(root: Path) -> bool:
    kill_jobs(root)
    return not jobs_in(root)


@pytest.fixture
def two_hosts(stack_env, control_plane, client, tmp_path):
    """A worker of the local pool on each of HOSTS, and the local pool's host_lost_after at
    LOST_AFTER_S; the shipped pool file is loaded again afterwards."""
    env, run_dir = stack_env
    stack.purge_queues([host_queue("local", host) for host in HOSTS])
    roots = {host: reachable_work_root(f"orch-e2e-{host}-") for host in HOSTS}
    workers = {host: stack.worker({**env, "ORCH_WORKER_HOST": host,
                                   "ORCH_WORK_ROOT": str(roots[host]), "LOG_LEVEL": "INFO"},
                                  run_dir, name=f"worker-local-{host}").start()
               for host in HOSTS}
    try:
        control_plane[0].wait_ready(60)
        for worker in workers.values():
            worker.wait_ready(60)
        wait_until(lambda: all(_heartbeat_of(host) for host in HOSTS),
                   what="a heartbeat of each host's worker")
        _pool_file_held(tmp_path)
        yield workers, roots
    finally:
        for host, worker in workers.items():
            worker.stop()
            kill_jobs(roots[host])
            shutil.rmtree(roots[host], ignore_errors=True)
        pipelines_load()


def _heartbeat_of(host: str) -> bool:
    from apps.pipelines.models import Worker

    return Worker.objects.filter(pool="local", host=host).exists()


def _pool_file_held(tmp_path: Path) -> None:
    """Load our local pool until it has held for 3 s: the control consumer loads the shipped
    files once it is ready, which can come a moment after its first heartbeats."""
    folder = stack.pipelines_with(tmp_path / "pipelines", {})
    (folder / "pools" / "local.yaml").write_text(LOCAL_POOL.lstrip())
    held_since: list[float] = []

    def ours_held() -> bool:
        if Pool.objects.get(name="local").host_lost_after_s != LOST_AFTER_S:
            report = pipelines_load(folder)
            assert not report.errors, report.errors
            held_since.clear()
        held_since.append(time.monotonic())
        return held_since[-1] - held_since[0] >= 3

    wait_until(ours_held, what=f"the local pool's host_lost_after at {LOST_AFTER_S} s")


def host_of(pid: str) -> str:
    return wait_until(lambda: Process.objects.get(pk=pid).host, 60,
                      what=f"the job of {pid} on a host")


def test_a_host_that_never_comes_back_ends_its_processes_lost(api, two_hosts):
    workers, roots = two_hosts
    hosts: dict[str, str] = {}
    while min(sum(h == host for h in hosts.values()) for host in HOSTS) < 2:
        assert len(hosts) < 16, f"the runs never reached both hosts: {hosts}"
        pid = post_process(api, "sleep", {"seconds": JOB_S})
        hosts[pid] = host_of(pid)
    on_dead = [pid for pid, host in hosts.items() if host == DEAD]
    for pid in hosts:
        wait_until(lambda pid=pid: Process.objects.get(pk=pid).state == State.RUNNING,
                   what=f"{pid} RUNNING")

    workers[DEAD].kill(signal.SIGKILL)  # the host dies for good: its worker and its jobs
    # Killed until none is left: one listed a moment ago may still be in /proc, or a runner
    # listed before its child may have started it meanwhile.
    wait_until(lambda: all_killed(roots[DEAD]), 10, what=f"no job left of {DEAD}")

    ended = {pid: wait_for_end(pid, timeout=120) for pid in hosts}
    for pid in on_dead:
        assert ended[pid].state == State.LOST, (pid, ended[pid].message)
        assert ended[pid].message.startswith(f"host {DEAD} silent since "), ended[pid].message
        events = api.get(f"{PROCESSES}{pid}/events/").json()
        assert (events[-1]["from"], events[-1]["to"], events[-1]["source"]) == (
            "RUNNING", "LOST", "control")
    for pid in set(hosts) - set(on_dead):  # the other host's (and any other worker's)
        assert ended[pid].state == State.SUCCEEDED, (pid, hosts[pid], ended[pid].message)
        assert logs_of(api, pid).rstrip().endswith("done")
