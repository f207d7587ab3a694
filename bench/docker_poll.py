"""How fast the docker target starts a container, and what one poll of many containers costs.

    DOCKER_HOST=unix:///run/podman/podman.sock python -m bench.docker_poll [--containers 200]

Measures, against the real engine at DOCKER_HOST:

1. submit to RUNNING: from ``submit()`` to the first poll that reports RUNNING, for one busybox
   container at a time (``--samples`` runs; median and max);
2. poll cycles of ``--containers`` running containers, one in 20 printing a line a second:
   the engine API calls (counted on the HTTP connection) and the time of ``statuses()`` (the
   state of every container) and of a full ``poll()`` (states plus the new log bytes of the
   containers whose log grew), with the log cursors carried from one cycle to the next as
   the control plane carries them. The first cycle reads every log (no cursor yet).

Every container it starts carries a pool label of its own and is removed at the end, also on
an error or Ctrl-C. Prints a JSON summary and writes it to bench/results/docker_poll.json.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workers.contract import JobSpec, PollItem, Resources, State
from workers.executors.docker import DockerExecutor
from workers.executors.docker.container_spec import LABEL_POOL

IMAGE = "orchestration/busybox:latest"


def spec(pool: str, command: list[str]) -> JobSpec:
    return JobSpec(process_id=str(uuid.uuid4()), pipeline="bench", version=1, target="docker",
                   pool=pool, image=IMAGE, command=command,
                   resources=Resources(cpus=0.1, memory_mb=16, time_limit_s=3600))


def item(s: JobSpec, handle: str) -> PollItem:
    return PollItem(process_id=s.process_id, handle=handle, submitted_at=time.time(),
                    time_limit_s=s.resources.time_limit_s)


def counted(executor: DockerExecutor, what):
    """Run ``what()``; return (seconds, engine calls by method and path)."""
    calls: Counter[str] = Counter()

    def hook(response, *args, **kwargs):
        path = response.request.path_url.split("?")[0].split("/", 2)[-1]
        parts = path.split("/")
        if len(parts) > 2:  # containers/<id>/logs -> containers/{id}/logs
            parts[1] = "{id}"
        calls[f"{response.request.method} /{'/'.join(parts)}"] += 1

    hooks = executor.client.api.hooks["response"]
    hooks.append(hook)
    started = time.perf_counter()
    try:
        what()
    finally:
        hooks.remove(hook)
    return time.perf_counter() - started, dict(calls)


def submit_to_running(executor: DockerExecutor, samples: int) -> dict:
    submit_s, running_s = [], []
    for _ in range(samples):
        s = spec(executor.pool, ["sleep", "600"])
        started = time.perf_counter()
        sub = executor.submit(s)
        submit_s.append(time.perf_counter() - started)
        poll_item = item(s, sub.handle)
        while executor.poll([poll_item])[0].state != State.RUNNING:
            time.sleep(0.01)
        running_s.append(time.perf_counter() - started)
        executor.cancel(sub.handle)
    return {
        "samples": samples,
        "submit_returns_s": {"median": statistics.median(submit_s), "max": max(submit_s)},
        "submit_to_running_s": {"median": statistics.median(running_s), "max": max(running_s)},
    }


# One container in TICKING prints a line a second; the others print nothing while they run.
TICKING = 20


def carried(items: list[PollItem], events) -> None:
    """The next round's items, as the control plane makes them from a poll's events."""
    for poll_item, event in zip(items, events, strict=True):
        if event.log_end is not None:
            poll_item.log_offset = event.log_end
        if event.log_cursor:
            poll_item.log_cursor = event.log_cursor


def poll_cycle(executor: DockerExecutor, count: int, threads: int) -> dict:
    ticking = ["sh", "-c", "while true; do echo tick; sleep 1; done"]
    specs = [spec(executor.pool, ticking if n % TICKING == 0 else ["sleep", "600"])
             for n in range(count)]
    started = time.perf_counter()

    def submit(s: JobSpec) -> str:
        return DockerExecutor(executor.pool, executor.settings).submit(s).handle

    with ThreadPoolExecutor(threads) as pool:
        handles = list(pool.map(submit, specs))
    started_s = time.perf_counter() - started
    items = [item(s, h) for s, h in zip(specs, handles, strict=True)]
    states = Counter(status.state for status in executor.statuses(items).values())
    if states != {State.RUNNING: count}:
        raise SystemExit(f"not all containers run: {states}")
    rounds = []
    for _ in range(4):  # the first reads every log; the next ones only those that grew
        statuses_s, statuses_calls = counted(executor, lambda: executor.statuses(items))
        answered: list = []
        poll_s, poll_calls = counted(
            executor, lambda out=answered: out.extend(executor.poll(items)))
        carried(items, answered)
        rounds.append((statuses_s, statuses_calls, poll_s, poll_calls))
        time.sleep(1)  # a poll interval, for the ticking ones to print
    steady = rounds[1:]
    return {
        "containers": count,
        "printing": len(range(0, count, TICKING)),
        "start_all_s": started_s,
        "statuses": {"engine_calls": rounds[0][1], "total_calls": sum(rounds[0][1].values()),
                     "median_s": statistics.median(r[0] for r in rounds)},
        "first_poll_with_logs": {"engine_calls": rounds[0][3],
                                 "total_calls": sum(rounds[0][3].values()),
                                 "seconds": rounds[0][2]},
        "poll_with_logs": {"engine_calls": steady[-1][3],
                           "total_calls": max(sum(r[3].values()) for r in steady),
                           "median_s": statistics.median(r[2] for r in steady)},
    }


def clean_up(executor: DockerExecutor, threads: int) -> int:
    api = executor.client.api
    found = api.containers(all=True, filters={"label": [f"{LABEL_POOL}={executor.pool}"]})
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda c: api.remove_container(c["Id"], force=True, v=True), found))
    return len(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on a plain kill too

    with tempfile.TemporaryDirectory(prefix="bench-docker-") as work_root:
        executor = DockerExecutor(f"bench-docker-{uuid.uuid4().hex[:8]}",
                                  {"work_root": work_root, "network": "none"})
        result = {"engine": executor.docker_host, "pool": executor.pool}
        try:
            result["start"] = submit_to_running(executor, args.samples)
            result["poll"] = poll_cycle(executor, args.containers, args.threads)
        finally:
            removed = clean_up(executor, args.threads)
            print(f"removed {removed} containers of pool {executor.pool}", file=sys.stderr)
    out = Path(__file__).resolve().parent / "results" / "docker_poll.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
