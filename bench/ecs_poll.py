"""AWS calls per poll cycle of the ECS executor, for many running tasks.

Runs against moto in server mode in this process (the tests' emulator, see
testbed/ecs_emulator.py): no AWS account is used and nothing outlives the script.
For each task count it starts that many tasks, polls until they are all RUNNING, then counts
the HTTP requests (retries included) that each further poll cycle sends, with a botocore event
hook on the executor's own clients. Wall times are moto's, not AWS's: only the call counts
carry over to a real account.

    python -m bench.ecs_poll                 # 250 and 1000 tasks
    python -m bench.ecs_poll --tasks 100 --cycles 5 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections import Counter

from testbed.ecs_emulator import BUSYBOX, FAKE_CREDENTIALS, EcsEmulator
from workers.contract import JobSpec, PollItem, Resources, State
from workers.executors.ecs import EcsExecutor


def measure(emulator: EcsEmulator, network, tasks: int, cycles: int, log_reads) -> dict:
    cluster = f"bench-{tasks}-{uuid.uuid4().hex[:6]}"
    emulator.create_cluster(cluster)
    subnets, groups = network
    settings = {
        "cluster": cluster, "region": emulator.region, "endpoint_url": emulator.url,
        "capacity_provider_strategy": [{"capacity_provider": "FARGATE_SPOT", "weight": 1}],
        "subnets": subnets, "security_groups": groups, "log_reads_per_poll": log_reads,
    }
    executor = EcsExecutor(f"bench-{cluster}", settings)
    started = time.monotonic()
    items = []
    for _ in range(tasks):
        spec = JobSpec(process_id=str(uuid.uuid4()), pipeline="bench", version=1, target="ecs",
                       pool=executor.pool, image=BUSYBOX, command=["sleep", "3600"],
                       resources=Resources(cpus=0.25, memory_mb=512))
        items.append(PollItem(process_id=spec.process_id, handle=executor.start(spec).handle))
    start_s = time.monotonic() - started
    while {e.state for e in executor.poll(items)} != {State.RUNNING}:
        pass
    seen: Counter[str] = Counter()

    def count(event_name, **_):
        seen[event_name.rsplit(".", 1)[-1]] += 1

    for client in (executor.ecs_polling, executor.logs_polling):  # the clients polls use
        client.meta.events.register("before-send", count)
    started = time.monotonic()
    for _ in range(cycles):
        events = executor.poll(items)
        if len(events) != tasks or {e.state for e in events} != {State.RUNNING}:
            raise RuntimeError(f"a poll of {tasks} running tasks answered {events[:3]}...")
    poll_s = (time.monotonic() - started) / cycles
    per_cycle = {op: n / cycles for op, n in sorted(seen.items())}
    return {
        "tasks": tasks, "log_reads_per_poll": log_reads, "cycles": cycles,
        "calls_per_cycle": per_cycle, "total_per_cycle": sum(per_cycle.values()),
        "seconds_per_cycle_on_moto": round(poll_s, 3),
        "seconds_to_start_on_moto": round(start_s, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="*", default=[250, 1000])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args()
    os.environ.update(FAKE_CREDENTIALS)
    emulator = EcsEmulator().start()
    try:
        network = emulator.create_network()
        results = [measure(emulator, network, n, args.cycles, budget)
                   for n in args.tasks for budget in (50, None)]
    finally:
        emulator.stop()
    for result in results:
        if args.json:
            print(json.dumps(result))
            continue
        calls = ", ".join(f"{op} {n:g}" for op, n in result["calls_per_cycle"].items())
        budget = result["log_reads_per_poll"]
        print(f"{result['tasks']:>5} running tasks, log_reads_per_poll={budget}: "
              f"{result['total_per_cycle']:g} calls per poll cycle ({calls}); "
              f"{result['seconds_per_cycle_on_moto']} s per cycle on moto")
    return 0


if __name__ == "__main__":
    sys.exit(main())
