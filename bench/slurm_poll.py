"""How soon a Slurm job runs, and how many Slurm calls one poll of 1,000 jobs makes.

    python -m bench.slurm_poll [--jobs 1000] [--samples 10]

Needs the cluster of ``deploy/slurm-cluster.sh start`` (run as root). Measures, for both
targets (``slurm``: sbatch/squeue; ``slurm_rest``: slurmrestd):

1. submit to RUNNING: from ``submit()`` to the first poll that reports RUNNING, one job at a
   time, polling every 20 ms (``--samples`` runs; median, min and max);
2. one poll cycle of ``--jobs`` handles: the Slurm calls it makes (every command through
   ``run_command`` and every slurmrestd request, counted) and its time. 1,000 running jobs do
   not fit on this 2-core node, so these are 1,000 real jobs submitted with ``sbatch --hold``:
   slurmctld holds them like any queued job and squeue lists them the same way.

Every job it submits is cancelled at the end, also on an error, Ctrl-C or SIGTERM. Prints a
JSON summary and writes it to bench/results/slurm_poll.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from workers.contract import JobSpec, PollItem, Resources, State
from workers.executors.slurm import cli
from workers.executors.slurm.cli import SlurmExecutor
from workers.executors.slurm.handle import Handle
from workers.executors.slurm.rest import SlurmRestExecutor

# Who the jobs run as, and the REST token for that user: what deploy/slurm-cluster.sh prints.
JOB_USER = os.environ.get("ORCH_SLURM_USER", "orch-slurm")
TOKEN_FILE = os.environ.get("ORCH_SLURM_TOKEN_FILE", "var/slurm/orch-slurm.jwt")


def make_spec(target: str, command: list[str]) -> JobSpec:
    return JobSpec(process_id=str(uuid.uuid4()), pipeline="bench", version=1, target=target,
                   pool="bench", command=command,
                   resources=Resources(cpus=1, memory_mb=64, time_limit_s=600))


def count_calls(executor, what) -> tuple[float, Counter]:
    """Run ``what()``; return (seconds, Slurm commands and slurmrestd requests it made)."""
    calls: Counter[str] = Counter()
    real_run, real_request = cli.run_command, getattr(executor, "request", None)

    def run(argv, timeout, env=None, user=None):
        calls[argv[0]] += 1
        return real_run(argv, timeout, env, user=user)

    def request(method, path, body=None):
        calls[f"{method} {path}"] += 1
        return real_request(method, path, body)

    cli.run_command = run
    if real_request is not None:
        executor.request = request
    try:
        started = time.perf_counter()
        what()
        return time.perf_counter() - started, calls
    finally:
        cli.run_command = real_run
        if real_request is not None:
            del executor.request


def submit_to_running(executor, target: str, samples: int, cleanup: set[str]) -> dict:
    waits = []
    for _ in range(samples):
        spec = make_spec(target, ["sleep", "30"])
        cleanup.add(spec.job_name)
        started = time.perf_counter()
        handle = executor.submit(spec).handle
        item = PollItem(spec.process_id, handle)
        while True:
            (event,) = executor.poll([item])
            if event.state == State.RUNNING:
                waits.append(time.perf_counter() - started)
                break
            if time.perf_counter() - started > 60:
                raise SystemExit(f"{target}: job {handle} not RUNNING after 60 s")
            time.sleep(0.02)
        executor.cancel(handle)
        time.sleep(0.3)  # let the node free its CPU before the next sample
    return {"samples": samples, "median_s": round(statistics.median(waits), 3),
            "min_s": round(min(waits), 3), "max_s": round(max(waits), 3)}


def held_jobs(count: int, cleanup: set[str]) -> list[PollItem]:
    """``count`` real jobs, held in the queue, named as the executors name theirs."""
    items = []
    for _ in range(count):
        process_id = str(uuid.uuid4())
        name = f"orch-{process_id}"
        cleanup.add(name)
        done = subprocess.run(
            ["sbatch",  # noqa: S607 - Slurm's, on PATH
             "--parsable", "--hold", f"--job-name={name}", "--mem=16M",
             "--output=/dev/null", "--wrap=true"],
            capture_output=True, text=True, timeout=30, check=True)
        handle = Handle(done.stdout.strip().split(";")[0], name, int(time.time()) - 1)
        items.append(PollItem(process_id, str(handle)))
    return items


def cancel_named(names: set[str]) -> None:
    if not names:
        return
    listed = subprocess.run(["squeue", "-h", "-o", "%i %j"],  # noqa: S607 - Slurm's, on PATH
                            capture_output=True, text=True,
                            timeout=60).stdout
    ids = [line.split()[0] for line in listed.splitlines() if line.split()[1:] and
           line.split()[1] in names]
    for start in range(0, len(ids), 500):
        subprocess.run(["scancel", *ids[start:start + 500]],  # noqa: S607 - Slurm's, on PATH
                       timeout=60, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cleanup: set[str] = set()
    report: dict = {"jobs": args.jobs, "held": True}
    with tempfile.TemporaryDirectory(prefix="slurm-bench-") as work_root:
        os.chmod(work_root, 0o755)  # noqa: S103 - the jobs' user must reach it
        executors = {
            "slurm": SlurmExecutor("bench", {"work_root": work_root, "partition": "main",
                                             "user": JOB_USER}),
            "slurm_rest": SlurmRestExecutor("bench", {
                "work_root": work_root, "partition": "main", "user": JOB_USER,
                "token_file": TOKEN_FILE}),
        }
        try:
            for target, executor in executors.items():
                report[f"{target}_submit_to_running"] = submit_to_running(
                    executor, target, args.samples, cleanup)
            started = time.perf_counter()
            items = held_jobs(args.jobs, cleanup)
            report["sbatch_hold_each_s"] = round((time.perf_counter() - started) / args.jobs, 4)
            for target, executor in executors.items():
                events: list = []
                seconds, calls = count_calls(
                    executor, lambda e=executor, out=events: out.extend(e.poll(items)))
                answered = Counter(str(e.state) for e in events)
                report[f"{target}_poll"] = {"seconds": round(seconds, 3), "calls": dict(calls),
                                            "states": dict(answered)}
        finally:
            cancel_named(cleanup)
    out = Path(__file__).resolve().parent / "results" / "slurm_poll.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
