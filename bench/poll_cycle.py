"""The control plane's poll cycle with 10,000 live processes: what one ``pools_poll()`` costs
(CPU of the control plane's process, wall time, messages), as the beat runs it every
``ORCH_POLL_INTERVAL_S``.

10,000 RUNNING processes of the shipped ``slurm-main`` pool (a shared front door: its polls go
to the pool's queue) are made in bulk in the bench's own database; each cycle reads them,
builds and signs the poll messages and publishes them to RabbitMQ (the bench's own vhost;
nobody consumes them, the queue is purged after). PostgreSQL's own CPU is not in the figure.

    .venv/bin/python -m bench.poll_cycle            # rewrites its section of docs/benchmarks.md
    .venv/bin/python -m bench.poll_cycle --small    # 1,000 processes: shows it still works
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path

from bench import page, setup
from bench.admission import measured_on

POOL, PIPELINE = "slurm-main", "hello-slurm"
SIZES = {"full": {"live": 10_000, "cycles": 10}, "small": {"live": 1_000, "cycles": 3}}
BULK = 2_000
SECTION = "bench.poll_cycle"  # its section of docs/benchmarks.md (bench.page)
MARK_START, MARK_END = page.marks(SECTION)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.poll_cycle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="1,000 live processes")
    parser.add_argument("--database", default="orchestration_bench_poll")
    parser.add_argument("--vhost", default="orchestration-bench-poll")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def live_add(count: int) -> None:
    """``count`` RUNNING processes of the pool, each with a Slurm handle, in bulk."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from apps.pipelines.models import PipelineVersion
    from apps.processes.models import Process
    from apps.teams.models import Team
    from workers.contract import State

    version = PipelineVersion.objects.select_related("pipeline").filter(
        pipeline__name=PIPELINE).order_by("-number").first()
    owner, _ = get_user_model().objects.get_or_create(username="bench-poll")
    team, _ = Team.objects.get_or_create(slug="bench-poll", defaults={"name": "bench-poll"})
    now = timezone.now()
    rows = []
    for n in range(count):
        pid = uuid.uuid4()
        rows.append(Process(id=pid, pipeline=version.pipeline, pipeline_version=version,
                            owner=owner, team=team, used_config={}, target="slurm", pool=POOL,
                            state=State.RUNNING, handle=f"{1000 + n}:orch-{pid}:1700000000",
                            admitted_at=now, queued_at=now, submitted_at=now, started_at=now))
    for start in range(0, len(rows), BULK):
        Process.objects.bulk_create(rows[start:start + BULK])


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(size: dict, broker: str) -> dict:
    from django.core.management import call_command

    from apps.pipelines.services import pipelines_load
    from apps.processes import messaging
    from apps.processes.models import Process
    from apps.processes.polling import pools_poll
    from bench.run import purge
    from workers.contract import pool_queue

    call_command("migrate", verbosity=0, interactive=False)
    loaded = pipelines_load(setup.ROOT / "pipelines")
    if loaded.errors:
        raise RuntimeError(f"pipelines not loaded: {loaded.errors}")
    Process.objects.filter(pool=POOL).delete()
    live_add(size["live"])
    items: list[int] = []
    send = messaging.send_poll

    def counted(request, **kwargs):
        if request.pool == POOL:  # the other Slurm pools get their settings, no handles
            items.append(len(request.items))
        return send(request, **kwargs)

    messaging.send_poll = counted
    cpu, wall = [], []
    try:
        pools_poll()  # warm: connections, caches
        for _ in range(size["cycles"]):
            items.clear()
            cpu_before, started = cpu_s(), time.perf_counter()
            pools_poll()
            cpu.append(cpu_s() - cpu_before)
            wall.append(time.perf_counter() - started)
        messages = len(items)
    finally:
        messaging.send_poll = send
        purge(broker, [pool_queue(POOL)])
        Process.objects.filter(pool=POOL).delete()
    return {"live": size["live"], "cycles": size["cycles"], "messages_per_cycle": messages,
            "handles_per_message": max(items) if items else 0,
            "cpu_s_p50": round(statistics.median(cpu), 3), "cpu_s_max": round(max(cpu), 3),
            "wall_s_p50": round(statistics.median(wall), 3),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def section(f: dict) -> str:
    live = f"{f['live']:,}"
    load = " ".join(f"{x:.2f}" for x in f["load_average"])
    met = "yes" if f["cpu_s_p50"] < 1 else "NO"
    rows = [
        (f"CPU of one `pools_poll()` with {live} live Slurm processes, p50 / max",
         f"{f['cpu_s_p50']} / {f['cpu_s_max']} s", "< 1 s", met),
        ("its wall time, p50", f"{f['wall_s_p50']} s", "", ""),
        ("poll messages per cycle for its pool (handles in the largest)",
         f"{f['messages_per_cycle']} ({f['handles_per_message']:,})", "1", ""),
    ]
    table = "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    return f"""{MARK_START}
## The poll cycle (`python -m bench.poll_cycle`)

{f['measured']}, at the end {load}.

| measure | figure | goal | met |
|---|---|---|---|
{table}

{f['cycles']} cycles, each read, built, signed and published as the beat's would (to the
bench's own vhost; nobody consumes them). The control plane's process CPU only: PostgreSQL's
is not in it. The processes are made in bulk in `orchestration_bench_poll` and removed after.
{MARK_END}"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = SIZES["small" if args.small else "full"]
    env = {**os.environ, **setup.services_env(args.database, args.vhost), "DEBUG": "false"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    setup.django_setup(env)
    figures = {"measured": measured_on(), **measure(size, env["ORCH_BROKER_URL"])}
    print(json.dumps(figures, indent=1))
    text = section(figures)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    if not args.small:
        page.section_write(DOCS, SECTION, text)
        print(f"bench: kept in {DOCS}", file=sys.stderr)
    return 0


DOCS = setup.ROOT / "docs" / "benchmarks.md"

if __name__ == "__main__":
    sys.exit(main())
