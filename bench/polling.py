"""Item 5: target calls per poll cycle, with many running handles per pool, counted through the
executor interface (``Executor.poll``), not timed.

Each target has its own script next to this one, written with its executor:
``docker_poll.py`` (real containers on the engine at DOCKER_HOST), ``slurm_poll.py`` (real
jobs on the cluster of deploy/slurm-cluster.sh, held in the queue) and ``ecs_poll.py`` (tasks
on moto, the ECS emulator). This runs each one whose executor and engine are here, as a
subprocess from a copy in the run's directory (so their own result files under
bench/results/ are left alone), and reads the counts from what it prints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

from testbed.services import ROOT

PODMAN_SOCKET = "unix:///run/podman/podman.sock"
TIMEOUT_S = 1200


def docker_host() -> str | None:
    """DOCKER_HOST, else the socket deploy/container-engine.sh serves, if it is there."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return host
    return PODMAN_SOCKET if Path(PODMAN_SOCKET.removeprefix("unix://")).exists() else None


def engine_missing(target: str) -> str | None:
    """Why ``target`` cannot be measured here, or None when it can."""
    module = {"docker": "docker", "slurm": "slurm", "ecs": "ecs"}[target]
    if find_spec(f"workers.executors.{module}") is None:
        return f"no executor yet (workers/executors/{module}.py)"
    if target == "docker":
        host = docker_host()
        if host is None:
            return "no container engine (deploy/container-engine.sh start)"
        try:
            import docker

            docker.DockerClient(base_url=host, timeout=5).ping()
        except Exception as exc:  # any failure means: not measurable here
            return f"the engine at {host} does not answer: {exc}"
    if target == "slurm":
        try:
            done = subprocess.run(["sinfo", "--noheader"],  # noqa: S607 - Slurm's, on PATH
                                  capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "no Slurm cluster (deploy/slurm-cluster.sh start)"
        if done.returncode != 0:
            return "Slurm does not answer (deploy/slurm-cluster.sh start)"
    if target == "ecs" and find_spec("moto") is None:
        return "moto (the ECS emulator) is not installed"
    return None


def measure(handles: int, run_dir: Path) -> dict:
    """{target: counts, or {"missing": why}} for docker, slurm and ecs."""
    return {
        "docker": _run("docker", run_dir, ["--containers", str(handles), "--samples", "1"],
                       _docker_counts),
        "slurm": _run("slurm", run_dir, ["--jobs", str(handles), "--samples", "1"],
                      _slurm_counts),
        "ecs": _run("ecs", run_dir, ["--tasks", str(handles), "--cycles", "1", "--json"],
                    _ecs_counts),
    }


def _run(target: str, run_dir: Path, args: list[str], read) -> dict:
    script = ROOT / "bench" / f"{target}_poll.py"
    if not script.exists():
        return {"missing": f"no bench/{script.name} yet"}
    reason = engine_missing(target)
    if reason:
        return {"missing": reason}
    copy = run_dir / "bench" / script.name
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(script, copy)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if target == "docker":
        env["DOCKER_HOST"] = docker_host() or ""
    try:
        done = subprocess.run([sys.executable, str(copy), *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"missing": f"bench/{script.name} did not finish in {TIMEOUT_S} s"}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"missing": f"bench/{script.name} failed: {' / '.join(tail)}"}
    try:
        return read(done.stdout)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        return {"missing": f"bench/{script.name} printed what this does not read: {exc!r}"}


def _docker_counts(stdout: str) -> dict:
    result = json.loads(stdout[stdout.index("{"):])
    poll = result["poll"]
    return {"handles": poll["containers"], "status_calls": poll["statuses"]["total_calls"],
            "calls": poll["poll_with_logs"]["engine_calls"],
            "total_calls": poll["poll_with_logs"]["total_calls"],
            "printing": poll.get("printing"),
            "first_cycle_calls": poll.get("first_poll_with_logs", {}).get("total_calls"),
            "note": "one container list answers for all; logs read only where they grew"}


def _slurm_counts(stdout: str) -> dict:
    result = json.loads(stdout[stdout.index("{"):])
    calls = result["slurm_poll"]["calls"]
    rest = result.get("slurm_rest_poll", {}).get("calls")
    return {"handles": result["jobs"], "status_calls": sum(calls.values()), "calls": calls,
            "total_calls": sum(calls.values()), "slurm_rest_calls": rest,
            "note": "jobs held in the queue (sbatch --hold): 1,000 do not run on 2 cores"}


def _ecs_counts(stdout: str) -> dict:
    """The run with a log budget (the shipped pool's ``log_reads_per_poll``) if there is one;
    the unbudgeted one is kept alongside."""
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    row = next((r for r in rows if r.get("log_reads_per_poll") is not None), rows[0])
    unbudgeted = next((r for r in rows if r.get("log_reads_per_poll") is None), None)
    calls = row["calls_per_cycle"]
    return {"handles": row["tasks"], "status_calls": calls.get("DescribeTasks", 0),
            "calls": calls, "total_calls": row["total_per_cycle"],
            "log_reads_per_poll": row.get("log_reads_per_poll"),
            "without_log_budget": unbudgeted and unbudgeted["calls_per_cycle"],
            "note": "on moto, the ECS emulator; calls counted with a botocore hook"}
