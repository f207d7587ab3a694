"""A run's results as rows (what was measured, ours, the baseline of the same run, the goal),
printed as a table, written as JSON under bench/results/ and kept in docs/benchmarks.md."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import page
from testbed.services import ROOT

RESULTS = ROOT / "bench" / "results"

# Every row a run reports, in order: the smoke test checks that each one is there.
ROW_IDS = (
    "submit_throughput", "submit_latency", "end_to_end",
    "start_latency_local", "start_latency_docker", "start_latency_slurm",
    "status_read", "detail_read", "list_read", "list_page_100", "list_filtered",
    "poll_calls_slurm", "poll_calls_docker", "poll_calls_ecs",
    "rss_web", "rss_worker", "sweep_accepted", "sweep_queued", "poll_cycle_cpu",
)


@dataclass
class Row:
    id: str
    item: int
    measure: str
    ours: str
    baseline: str = ""
    ratio: str = ""
    goal: str = ""
    met: str = ""


def machine() -> dict:
    """What the figures were measured on (no paths)."""
    info = {"cpus": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                info["os"] = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
        info["load_at_start"] = " ".join(load)
    except OSError:
        pass
    return info


def versions() -> dict:
    """PostgreSQL's and RabbitMQ's versions, as the bench's connections report them."""
    found = {}
    with contextlib.suppress(Exception):  # a version is nice to have, never a reason to fail
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            found["postgresql"] = cursor.fetchone()[0].split()[0]
    try:
        done = subprocess.run(["rabbitmqctl", "-q", "version"],  # noqa: S607 - on PATH
                              capture_output=True, text=True, timeout=10)
        if done.returncode == 0:
            found["rabbitmq"] = done.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return found


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def rows(results: dict) -> list[Row]:
    out: list[Row] = []
    submit = results["submit"]
    ours, plain = submit["submit"], submit["plain"]
    clients = submit["clients"]
    out.append(Row(
        "submit_throughput", 1, f"POST /api/processes/, c={clients} (requests/s)",
        _n(ours["per_second"]), f"plain DRF POST {_n(plain['per_second'])}",
        f"{submit['ratio']:.2f}x", ">= 400/s and >= 1.5x",
        _met(ours["per_second"] >= 400 and submit["ratio"] >= 1.5)))
    out.append(Row(
        "submit_latency", 1, "POST /api/processes/ p50 / p99 (ms)",
        f"{ours['p50_ms']:.1f} / {ours['p99_ms']:.1f}",
        f"{plain['p50_ms']:.1f} / {plain['p99_ms']:.1f}", "", "p99 < 50 ms",
        _met(ours["p99_ms"] < 50)))
    e2e = results["end_to_end"]
    out.append(Row(
        "end_to_end", 2, f"{e2e['ours']['processes']:,} no-op processes, submit to "
        "SUCCEEDED (per s)", _n(e2e["ours"]["per_second"], 1),
        f"raw Celery {_n(e2e['raw_celery']['per_second'], 1)}",
        f"{e2e['ratio'] * 100:.0f} %", ">= 15 %, then >= 30 %",
        f"15 %: {_met(e2e['ratio'] >= 0.15)}, 30 %: {_met(e2e['ratio'] >= 0.30)}"))
    # Submit to RUNNING as a client sees it (the RUNNING event recorded): from the POST on
    # local and Slurm, from the target's own start of the job on Docker (the container's
    # StartedAt), with the other figure beside it.
    for target, measured, limit in (("local", "seen", 50), ("docker", "after_start", 150),
                                    ("slurm", "seen", 1200)):
        latency = results["start_latency"].get(target) or {"missing": "not run"}
        row_id = f"start_latency_{target}"
        measure = (f"submit to RUNNING seen on {target}, p50 / p99 (ms)" if measured == "seen"
                   else f"RUNNING seen after the {target} job's own start, p50 / p99 (ms)")
        if "missing" in latency:
            out.append(Row(row_id, 3, measure, f"not measured: {latency['missing']}"))
            continue
        # A result written before these figures has only the POST to started_at.
        p50 = latency.get(f"{measured}_p50_ms", latency["p50_ms"])
        p99 = latency.get(f"{measured}_p99_ms", latency["p99_ms"])
        other = (f"submit to RUNNING seen {latency.get('seen_p50_ms', p50):.0f} ms p50"
                 if measured == "after_start" else
                 f"to the start it records {latency['p50_ms']:.0f} ms p50")
        out.append(Row(
            row_id, 3, measure + f", {latency['samples']} runs", f"{p50:.0f} / {p99:.0f}",
            other, "", f"p50 < {limit:,} ms", _met(p50 < limit)))
    reads, scale = results["scale_reads"], results["scale"]
    rows_n = f"{scale['rows']:,}"
    for row_id, key, what, goal in (
        ("status_read", "status", "GET .../<id>/status/", "p99 < 20 ms"),
        ("detail_read", "detail", "GET .../<id>/", ""),
        ("list_read", "list", "GET /api/processes/ (page 1 of 50)", ""),
        ("list_page_100", "list_page_100", "GET /api/processes/?page=100", ""),
        ("list_filtered", "list_failed", "GET /api/processes/?state=FAILED", ""),
    ):
        read = reads[key]
        out.append(Row(
            row_id, 4, f"{what} with {rows_n} processes, p50 / p99 (ms)",
            f"{read['p50_ms']:.1f} / {read['p99_ms']:.1f}", "", "", goal,
            _met(read["p99_ms"] < 20) if goal else ""))
    polling = results["polling"]
    for target, goal, check in (
        ("slurm", "1 call", lambda p: p["status_calls"] <= 1),
        ("docker", "tens of calls (<= 100)", lambda p: p.get("total_calls", 1e9) <= 100),
        ("ecs", "<= 10 describe_tasks", lambda p: p["status_calls"] <= 10),
    ):
        poll = polling.get(target) or {"missing": "not run"}
        row_id = f"poll_calls_{target}"
        if "missing" in poll:
            out.append(Row(row_id, 5, f"target calls per poll cycle, {target}",
                           f"not measured: {poll['missing']}"))
            continue
        calls = ", ".join(f"{name} {count:g}" for name, count in poll["calls"].items())
        budget = poll.get("log_reads_per_poll")
        printing = poll.get("printing")
        out.append(Row(
            row_id, 5, f"target calls per poll cycle, {poll['handles']:,} {target} handles"
            + (f" (log reads per poll {budget})" if budget else "")
            + (f" ({printing} printing)" if printing else ""),
            f"{poll['status_calls']:g} for states ({calls})",
            f"first cycle {poll['first_cycle_calls']:g} calls"
            if poll.get("first_cycle_calls") else "", "", goal,
            _met(check(poll)) if check else ""))
    foot = results["footprint"]
    out.append(Row(
        "rss_web", 6, f"resident memory, web (gunicorn, {foot['web_processes']} processes)",
        f"{foot['web_kib'] / 1024:.0f} MiB ({foot['web_worker_kib'] / 1024:.0f} per worker)"))
    out.append(Row(
        "rss_worker", 6, "resident memory, idle local worker",
        f"{foot['worker_idle_kib'] / 1024:.0f} MiB",
        f"raw Celery worker {foot['baseline_worker_idle_kib'] / 1024:.0f} MiB",
        f"{foot['worker_idle_kib'] / foot['baseline_worker_idle_kib']:.2f}x"))
    out += _sub_benchmark_rows(results)
    return out


def _sub_benchmark_rows(results: dict) -> list[Row]:
    """Rows 7 and 8: a sweep (``bench.sweep``) and the poll cycle (``bench.poll_cycle``)."""
    out: list[Row] = []
    sweep = results.get("sweep") or {"missing": "not run"}
    if "missing" in sweep:
        out += [Row("sweep_accepted", 7, "a sweep, POST /api/sweeps/ to its 202",
                    f"not measured: {sweep['missing']}"),
                Row("sweep_queued", 7, "a sweep, all QUEUED", f"not measured: {sweep['missing']}")]
    else:
        runs = f"{sweep['size']:,}"
        out.append(Row(
            "sweep_accepted", 7, f"a sweep of {runs} runs, POST /api/sweeps/ to its 202 (s)",
            f"{sweep['accepted_s']:.2f}", f"web worker grew {sweep['web_worker_rss_growth_mib']}"
            " MiB", "", "< 5 s, memory flat", _met(sweep["accepted_s"] < 5)))
        queued = sweep.get("all_queued_s")
        out.append(Row(
            "sweep_queued", 7, f"a sweep of {runs} runs, all QUEUED after its pool resumes (s)",
            f"{queued:.2f}" if queued is not None else
            f"not all: {sweep['queued']:,} in time", f"{sweep.get('queued_per_s')} per s", "",
            "< 20 s", _met(queued is not None and queued < 20)))
    cycle = results.get("poll_cycle") or {"missing": "not run"}
    if "missing" in cycle:
        out.append(Row("poll_cycle_cpu", 8, "control plane's poll cycle, CPU",
                       f"not measured: {cycle['missing']}"))
    else:
        out.append(Row(
            "poll_cycle_cpu", 8, f"control plane's poll cycle, {cycle['live']:,} live Slurm "
            "processes, CPU p50 / max (s)", f"{cycle['cpu_s_p50']} / {cycle['cpu_s_max']}",
            f"wall {cycle['wall_s_p50']} s, {cycle['messages_per_cycle']} message(s)", "",
            "< 1 s", _met(cycle["cpu_s_p50"] < 1)))
    return out


def table(results: dict) -> str:
    """The Markdown table with a line that says when, where and at what size."""
    header = ("| # | measure | ours | baseline (same run) | ratio | goal | met |\n"
              "|---|---|---|---|---|---|---|")
    lines = [f"| {r.item} | {r.measure} | {r.ours} | {r.baseline} | {r.ratio} | {r.goal} "
             f"| {r.met} |" for r in rows(results)]
    split = results["end_to_end"]["ours"].get("cpu_ms_per_process") or {}
    cpu = ["", "Where the CPU of the end-to-end phase went (ms of CPU per no-op run):", "",
           "| where | ms |", "|---|---|", *(f"| {name} | {ms:.1f} |" for name, ms in split.items())]
    return "\n".join([_heading(results), "", header, *lines, *(cpu if split else [])])


def _heading(results: dict) -> str:
    m = results["machine"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(results["started"]))
    software = ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items())
    return (f"Size {results['size']}, {when}, {m.get('cpus')} CPUs ({m.get('cpu', '?')}), "
            f"{m.get('memory_gib', '?')} GiB, {m.get('os', '?')}, Python {m.get('python')}"
            f"{', ' + software if software else ''}; load average at start "
            f"{m.get('load_at_start', '?')}; run took {results['seconds']:.0f} s.")


def write_json(results: dict, extra: Path | None) -> list[Path]:
    """bench/results/<time>.json and latest.json (git-ignored), and ``extra`` if given."""
    results = {**results, "rows": [asdict(r) for r in rows(results)]}
    text = json.dumps(results, indent=2, default=str) + "\n"
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(results["started"]))
    size = results["size"]
    written = [RESULTS / f"{stamp}-{size}.json", RESULTS / f"latest-{size}.json"]
    if extra:
        written.append(extra)
    for path in written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return written


DOCS = """# Benchmarks

Every figure is measured against a baseline in the same run, on the same machine: these
machines are shared and noisy (the load average at the start of the run is part of its
heading), so the ratios travel better than the figures. To run it:

```bash
.venv/bin/python -m bench                   # full size, about {minutes} minutes; rewrites this page
.venv/bin/python -m bench --start-engines   # also starts Podman and the Slurm cluster first
.venv/bin/python -m bench --small           # about a minute: shows it still works (CI runs it)
```

It uses its own PostgreSQL database and RabbitMQ vhost (`deploy/services.sh orchestration_bench
orchestration-bench`), starts its own gunicorn, control consumer, beat and local worker (as
`deploy/stack.sh` does), a raw-Celery worker for the baseline and, where their engines answer,
workers of the Docker and Slurm pools; it stops all of them at the end. Results go to
`bench/results/` as JSON.

## Latest run

{table}

## What each row measures

1. **Submit**: authenticated (OAuth2 bearer token), validated (JSON Schema) and persisted
   (the process, its first event, attempt and audit entry in one transaction; the relay
   publishes it after the answer) `POST /api/processes/` under gunicorn (2 workers, 4
   threads) with {clients} concurrent keep-alive clients, in alternating rounds with the
   baseline: a plain DRF `CreateAPIView` with a `ModelSerializer` that inserts one row,
   behind django-oauth-toolkit's token check (the API's authentication class with its cache
   of checked tokens off) and the same permission class. Nothing consumes the published job
   specs (a pool with no worker), so this is the API alone.
2. **End to end**: no-op processes (`true`) on the local pool, posted through the API by
   {clients} clients, until every one is SUCCEEDED (the time of the last `finished_at`). The
   baseline: as many trivial Celery tasks with the same reliable settings (acks late, prefetch
   1, publisher confirms) on the same broker, each answering with one message, as our worker
   answers a job spec with an event message.
3. **Start latency**: one process at a time on an idle pool, until its RUNNING is recorded
   (when a client can see it): from the POST being sent on local and Slurm, from the job's
   own start on Docker (the container's `StartedAt`, which the control plane records as
   `started_at`). Docker and Slurm jobs are stopped once they run. A local job's starter and
   a Docker container's start report RUNNING with the submission; a Slurm job queued by
   sbatch is followed by its worker (an `squeue` of just that job every 0.25 s) rather than
   waiting for the poll loop (every `ORCH_POLL_INTERVAL_S`, 2 s by default).
4. **Scale**: one client owning that many processes, generated in PostgreSQL with
   `generate_series` (kept between runs); sequential reads through gunicorn.
5. **Polling cost**: target calls one `Executor.poll` makes for that many live handles,
   counted (never timed) by the scripts `bench/docker_poll.py`, `bench/slurm_poll.py` and
   `bench/ecs_poll.py` (ECS on moto, its emulator).
6. **Footprint**: resident memory (RSS) of the web process (gunicorn's master and workers)
   and of a worker of the local pool, idle, against a raw Celery worker with the same settings.
7. **Sweep**: `python -m bench.sweep --size 10000 --paused`, run by this one with its own
   database, vhost and stack: one `POST /api/sweeps/` of a 100 x 100 grid (`lr` x `seed`) of
   a no-op pipeline, to its 202 with the pool paused (every run checked; the processes, their
   first events and attempts inserted and committed), then from the pool's resume until every
   run is QUEUED (admitted and published by the relay, in batches). No worker takes the specs.
8. **Poll cycle**: `python -m bench.poll_cycle`, likewise: the control plane's `pools_poll()`
   with that many live Slurm processes (its section below).

{notes}

{admission}

{poll_cycle}
"""
# Between these marks: what the team wrote about the runs (what each change bought, what is
# missed and why), kept as it is when the table is rewritten.
NOTES = "notes"

ADMISSION_UNMEASURED = "Admission: not measured yet (`.venv/bin/python -m bench.admission`)."


POLL_CYCLE_UNMEASURED = "Poll cycle: not measured yet (`.venv/bin/python -m bench.poll_cycle`)."


def write_docs(results: dict, table_text: str, path: Path) -> None:
    # Their sections are their own runs', and the notes the team's: kept as they are.
    from bench import admission, poll_cycle

    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else ""
    kept = page.section_of(text, admission.SECTION)
    cycle = page.section_of(text, poll_cycle.SECTION)
    notes = page.section_of(text, NOTES) or "\n".join(page.marks(NOTES))
    path.write_text(DOCS.format(table=table_text, clients=results["settings"]["clients"],
                                minutes=max(1, round(results["seconds"] / 60)),
                                notes=notes, admission=kept or ADMISSION_UNMEASURED,
                                poll_cycle=cycle or POLL_CYCLE_UNMEASURED))
