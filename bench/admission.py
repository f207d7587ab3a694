"""The admission row: what ``apps.processes.admission.admit`` costs with 10,000 processes
waiting on one pool.

A pool of capacity 100, 10,000 PENDING processes of four teams waiting on it (created in bulk
in the bench's database). Each round ends the processes admitted by the last one (as applied
end events would, untimed), tops the queue up to 10,000 again, then times one ``admit()``: it
takes the 100 freed slots, and the relay's publish of them. Two rates: processes admitted per
second of the relay's round, publishing included (PENDING -> QUEUED in its batches, with the
broker's send left out: this measures the control plane, not RabbitMQ), and of the decision
alone (the locked count, choice and mark, committed). Then the cost of one ``admit()`` on the
full pool, which admits nothing.

    .venv/bin/python -m bench.admission            # a few minutes; rewrites its section of
                                                   # docs/benchmarks.md
    .venv/bin/python -m bench.admission --small    # a minute: shows it still works

It uses its own PostgreSQL database (``deploy/services.sh orchestration_bench_admission``),
and removes what it made there when it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import page, report, setup

POOL = "bench-admission"
PIPELINE = "bench-admit"
TEAMS = ("adm-a", "adm-b", "adm-c", "adm-d")
POOL_FILE = f"name: {POOL}\ntarget: local\ncapacity: {{capacity}}\nsettings: {{{{}}}}\n"
SIZES = {"full": {"waiting": 10_000, "capacity": 100, "rounds": 50, "full_calls": 200},
         "small": {"waiting": 1_000, "capacity": 20, "rounds": 5, "full_calls": 20}}
BULK = 2_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.admission", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="1,000 waiting, 5 rounds")
    parser.add_argument("--database", default="orchestration_bench_admission")
    parser.add_argument("--vhost", default="orchestration-bench-admission")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def prepare(run_dir: Path, capacity: int):
    """Migrate, load the shipped pipelines plus the bench pool and its pipeline, and return
    (the pipeline's version, its owner, the teams)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from apps.pipelines.models import PipelineVersion
    from apps.pipelines.services import pipelines_load
    from apps.teams.models import Team

    call_command("migrate", verbosity=0, interactive=False)
    folder = run_dir / "pipelines"
    shutil.copytree(setup.ROOT / "pipelines", folder)
    (folder / "pools" / f"{POOL}.yaml").write_text(POOL_FILE.format(capacity=capacity))
    (folder / f"{PIPELINE}.yaml").write_text(setup.NOOP.format(name=PIPELINE, pool=POOL))
    report = pipelines_load(folder)
    if report.errors:
        raise RuntimeError(f"pipelines not loaded: {report.errors}")
    version = PipelineVersion.objects.select_related("pipeline").filter(
        pipeline__name=PIPELINE).order_by("-number").first()
    owner, _ = get_user_model().objects.get_or_create(username=PIPELINE)
    teams = [Team.objects.get_or_create(slug=slug, defaults={"name": slug})[0]
             for slug in TEAMS]
    return version, owner, teams


def waiting_add(version, owner, teams, count: int) -> None:
    """``count`` waiting processes, spread over the teams, in bulk."""
    from apps.processes.models import Process

    rows = [Process(pipeline=version.pipeline, pipeline_version=version, owner=owner,
                    team=teams[i % len(teams)], used_config={"name": "bench"},
                    target="local", pool=POOL)
            for i in range(count)]
    for start in range(0, len(rows), BULK):
        Process.objects.bulk_create(rows[start:start + BULK])


class Timed:
    """The relay's publish of what admit() admitted (``relay.publish_admitted``), timed
    apart: the decision is the round's time less this."""

    def __init__(self, publish):
        self.publish, self.seconds = publish, 0.0

    def __call__(self):
        started = time.perf_counter()
        try:
            return self.publish()
        finally:
            self.seconds += time.perf_counter() - started


def measure(size: dict) -> dict:
    from django.utils import timezone

    from apps.processes import relay
    from apps.processes.admission import admit, holding, waiting_on
    from apps.processes.models import Process
    from apps.processes.spec_batches import SpecPublisher
    from workers.contract import State

    class NoBroker(SpecPublisher):
        def publish(self, processes) -> None:  # the broker's part is not measured
            return None

    publisher = NoBroker()
    publish = Timed(lambda: relay.publish_admitted(publisher))
    run_dir = Path(tempfile.mkdtemp(prefix="orchestration-bench-admission-"))
    try:
        version, owner, teams = prepare(run_dir, size["capacity"])
        Process.objects.filter(pool=POOL).delete()
        waiting_add(version, owner, teams, size["waiting"])
        admitted, seconds, calls = 0, 0.0, []
        for _ in range(size["rounds"]):
            holding(POOL).update(state=State.SUCCEEDED, finished_at=timezone.now())
            waiting_add(version, owner, teams, size["waiting"] - waiting_on(POOL).count())
            started = time.perf_counter()
            ids = admit(POOL)
            publish()  # as the relay's round does next
            took = time.perf_counter() - started
            admitted += len(ids)
            seconds += took
            calls.append(took)
        if holding(POOL).count() != size["capacity"]:
            raise RuntimeError("the pool is not full after the rounds")
        full = []
        for _ in range(size["full_calls"]):
            started = time.perf_counter()
            if admit(POOL):
                raise RuntimeError("a full pool admitted a process")
            full.append(time.perf_counter() - started)
        return {
            "waiting": size["waiting"], "capacity": size["capacity"], "rounds": size["rounds"],
            "teams": len(TEAMS), "admitted": admitted,
            "admitted_per_s": round(admitted / seconds, 1),
            "decided_per_s": round(admitted / (seconds - publish.seconds), 1),
            "publish_ms_per_process": round(publish.seconds / admitted * 1000, 1),
            "admit_call_ms_p50": round(statistics.median(calls) * 1000, 1),
            "full_pool_call_ms_p50": round(statistics.median(full) * 1000, 2),
            "full_pool_call_ms_p99": round(statistics.quantiles(full, n=100)[98] * 1000, 2),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        Process.objects.filter(pool=POOL).delete()
        shutil.rmtree(run_dir, ignore_errors=True)


# Its section of docs/benchmarks.md, between these marks: ``python -m bench`` keeps it.
SECTION = "bench.admission"  # its section of docs/benchmarks.md (bench.page)
MARK_START, MARK_END = page.marks(SECTION)
DOCS = setup.ROOT / "docs" / "benchmarks.md"


def section(figures: dict) -> str:
    """Its section of docs/benchmarks.md, marks included."""
    f = figures
    waiting, capacity = f"{f['waiting']:,}", f["capacity"]
    rows = [
        (f"processes admitted per s by `admit()` as slots free, {waiting} waiting on a pool "
         f"of capacity {capacity} ({f['teams']} teams), with their publish",
         f"{f['admitted_per_s']:,}"),
        ("... by its decision alone (the locked count, choice and mark, committed)",
         f"{f['decided_per_s']:,}"),
        ("the publish, per process (PENDING -> QUEUED in the relay's batches; the broker's "
         "send left out)", f"{f['publish_ms_per_process']} ms"),
        (f"one `admit()` on the full pool, {waiting} waiting, p50 / p99",
         f"{f['full_pool_call_ms_p50']} / {f['full_pool_call_ms_p99']} ms"),
    ]
    table = "\n".join(f"| {measure} | {figure} |" for measure, figure in rows)
    load = " ".join(f"{x:.2f}" for x in f["load_average"])
    return f"""{MARK_START}
## Admission (`python -m bench.admission`)

{f['measured']}, at the end {load}.

| measure | figure |
|---|---|
{table}

Each of {f['rounds']} rounds ends the {capacity} processes admitted by the one before (as
their end events would, untimed), tops the queue up to {waiting} again and times one
`admit()`, which takes the {capacity} free slots. The processes are made in bulk in the
bench's own database (`orchestration_bench_admission`) and removed at the end.
{MARK_END}"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = SIZES["small" if args.small else "full"]
    env = {**os.environ, **setup.services_env(args.database, args.vhost), "DEBUG": "false"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    setup.django_setup(env)
    figures = {"measured": measured_on(), **measure(size)}
    print(json.dumps(figures, indent=1))
    text = section(figures)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    if not args.small:
        page.section_write(DOCS, SECTION, text)
        print(f"bench: kept in {DOCS}", file=sys.stderr)
    return 0


def measured_on() -> str:
    """When and on what, as the page's other heading says it (no paths)."""
    machine = report.machine()
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine.get('cpus')} CPUs "
            f"({machine.get('cpu', 'unknown')}), Python {machine.get('python')}; load average "
            f"at start {machine.get('load_at_start', 'unknown')}")


if __name__ == "__main__":
    sys.exit(main())
