"""A sweep of 10,000 runs in one request: POST /api/sweeps/ with a 100 x 100 parameter grid
through gunicorn as deploy/stack.sh runs it (2 worker processes of 4 threads), with the
control consumer and the beat, on the bench's own PostgreSQL database and RabbitMQ vhost.

    .venv/bin/python -m bench.sweep [--size 10000]

Measured: the time until the 202, the time until every run of the sweep is QUEUED (its job
spec published to its pool's queue), and the web server's memory: each gunicorn worker's
resident memory (VmRSS) and its peak (VmHWM) before and after. The sweep's pool has room for
every run (admission must not hold them) and no worker: QUEUED is the goal, and the specs are
purged from the vhost afterwards.

With ``--paused`` the pool is paused while the sweep is posted, so the 202 measures the
sweep's own work (checking, inserting, committing) and nothing of admission; the pool is then
resumed in the database and the beat's next round admits and publishes (the control consumer's
work, off the request path). Past ``--timeout`` the runs QUEUED so far and their rate are
reported instead of a time."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import urllib.request
from pathlib import Path

from bench import setup, stack, usage
from testbed.services import Service, free_port, http_status

CLIENT = "bench-sweep"
POOL = "bench-sweep"
PIPELINE = "sweep-noop"
PIPELINE_YAML = f"""name: {PIPELINE}
version: "1.0"
description: Does nothing; the sweep benchmark's job.
target: local
pool: {POOL}
run:
  command: ["true"]
resources: {{cpus: 1, memory: 64M, time_limit: 1m}}
config_schema:
  type: object
  properties:
    lr: {{type: number, exclusiveMinimum: 0}}
    seed: {{type: integer, minimum: 0}}
    name: {{type: string, maxLength: 200}}
  required: [lr, seed]
  additionalProperties: false
defaults: {{name: sweep, lr: 0.1, seed: 0}}
"""
POOL_YAML = f"""name: {POOL}
target: local
capacity: 100000
settings: {{}}
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10_000,
                        help="runs in the sweep (a square grid of lr x seed, or near it)")
    parser.add_argument("--paused", action="store_true",
                        help="post to the paused pool, then resume it (see above)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds to wait for every run to be QUEUED")
    parser.add_argument("--database", default="orchestration_bench_sweep",
                        help="the bench's own PostgreSQL database (made anew)")
    parser.add_argument("--vhost", default="orchestration-bench-sweep",
                        help="the bench's own RabbitMQ vhost (made if missing)")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run's directory (logs) afterwards")
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(f"bench.sweep: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with setup.run_dir("orchestration-bench-sweep-", say, args.keep) as run_dir:
        say(f"a sweep of {args.size}; logs in {run_dir / 'logs'}")
        results = measure(args, run_dir)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def grid_of(size: int) -> dict[str, list]:
    """A grid of exactly ``size`` runs: lr x seed, as square as ``size`` allows."""
    side = next(d for d in range(math.isqrt(size), 0, -1) if size % d == 0)
    return {"lr": [round(0.001 * (i + 1), 6) for i in range(side)],
            "seed": list(range(size // side))}


def measure(args: argparse.Namespace, run_dir: Path) -> dict:
    env = {**os.environ, **setup.services_env(args.database, args.vhost)}
    folder = setup.pipelines_dir(run_dir)
    (folder / f"{PIPELINE}.yaml").write_text(PIPELINE_YAML)
    (folder / "pools" / f"{POOL}.yaml").write_text(POOL_YAML)
    env.update(DEBUG="false", ORCH_PIPELINES_DIR=str(folder), PYTHONUNBUFFERED="1",
               ORCH_SWEEP_MAX_SIZE=str(max(args.size, 10_000)))
    env.pop("DJANGO_SETTINGS_MODULE", None)
    setup.django_setup(env)
    from django.core.management import call_command

    from apps.pipelines.services import pipelines_load

    call_command("migrate", verbosity=0, interactive=False)
    report = pipelines_load()
    if report.errors:
        raise RuntimeError(f"pipelines not loaded: {report.errors}")
    client_id, secret = setup.client_create(CLIENT)
    purge(env)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = run_dir / "logs"
    parts = [stack.control_consumer(env, logs).start(), stack.beat(env, logs).start()]
    web = stack.web(env, logs, port).start()
    try:
        web.wait_for(lambda: http_status(f"{base}/api/health/") in (200, 503), 60,
                     "the API to answer")
        token = setup.token_get(base, client_id, secret)
        for _ in range(6):  # both gunicorn workers have served a small sweep: code loaded
            sweep_id, _ = post(base, token, {"lr": [0.5], "seed": [1, 2]})
            if queued_wait(sweep_id, 2, 60)[0] != 2:
                raise RuntimeError("a warm-up sweep of 2 was not QUEUED in 60 s")
        before = memory(web)

        from apps.pipelines.models import Pool

        Pool.objects.filter(name=POOL).update(paused=args.paused)
        say(f"posting a grid of {args.size}" + (" to the paused pool" if args.paused else ""))
        sweep_id, accepted_s = post(base, token, grid_of(args.size))
        after = memory(web)
        say(f"202 after {accepted_s:.2f} s; waiting until every run is QUEUED")
        Pool.objects.filter(name=POOL).update(paused=False)  # the beat's next round admits
        queued, queued_s = queued_wait(sweep_id, args.size, args.timeout)
        counts = json_get(f"{base}/api/sweeps/{sweep_id}/", token)["counts"]
    finally:
        web.stop()
        for part in parts:
            part.stop()
        purge(env)
    growth = {pid: after[pid]["rss"] - before.get(pid, {}).get("rss", 0) for pid in after}
    return {
        "size": args.size,
        "machine": {"cpus": os.cpu_count()},
        "paused": args.paused,
        "accepted_s": round(accepted_s, 2),
        "queued": queued,
        # From the POST (open pool) or from the resume (--paused); None: not all in time.
        "all_queued_s": round(queued_s + (0 if args.paused else accepted_s), 2)
        if queued == args.size else None,
        "queued_per_s": round(queued / queued_s, 1) if queued_s else None,
        "counts": {state: n for state, n in counts.items() if n},
        "web_workers_kib": {"before": before, "after": after},
        "web_worker_rss_growth_mib": round(max(growth.values()) / 1024, 1),
        "web_worker_peak_mib": round(max(m["hwm"] for m in after.values()) / 1024, 1),
    }


def post(base: str, token: str, grid: dict) -> tuple[str, float]:
    """POST the sweep; its id and the seconds until the 202."""
    body = json.dumps({"pipeline": PIPELINE, "base_config": {"name": "bench"},
                       "grid": grid}).encode()
    request = urllib.request.Request(  # noqa: S310 - our own server, over http
        f"{base}/api/sweeps/", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=900) as answer:  # noqa: S310 - as above
        status, found = answer.status, json.load(answer)
    elapsed = time.perf_counter() - started
    if status != 202:
        raise RuntimeError(f"the sweep was answered {status}: {found}")
    return found["id"], elapsed


def json_get(url: str, token: str) -> dict:
    request = urllib.request.Request(  # noqa: S310 - our own server, over http
        url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - our own server
        return json.load(answer)


def queued_wait(sweep_id: str, size: int, timeout: float) -> tuple[int, float]:
    """(runs QUEUED, seconds from now) once every process of the sweep has been QUEUED or
    ``timeout`` has passed (read from the database every 100 ms)."""
    from apps.processes.models import Process

    started = time.perf_counter()
    while True:
        queued = Process.objects.filter(sweep_id=sweep_id, queued_at__isnull=False).count()
        elapsed = time.perf_counter() - started
        if queued == size or elapsed > timeout:
            return queued, elapsed
        time.sleep(0.1)


def memory(web: Service) -> dict[int, dict[str, int]]:
    """VmRSS and VmHWM (KiB) of each gunicorn worker process of ``web``."""
    found = {}
    for pid in usage.process_tree(web.pid):
        if pid == web.pid:
            continue
        status = dict(line.split(":", 1) for line in
                      Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        found[pid] = {"rss": int(status["VmRSS"].split()[0]),
                      "hwm": int(status["VmHWM"].split()[0])}
    return found


def purge(env: dict[str, str]) -> None:
    """Drop the sweep pool's published specs (no worker consumes them)."""
    from bench.run import purge as queues_purge

    queues_purge(env["ORCH_BROKER_URL"], [f"pool.{POOL}"])


def table(results: dict) -> str:
    since = "the resume" if results["paused"] else "the POST"
    queued = (f"{results['all_queued_s']:>8.2f} s" if results["all_queued_s"] is not None
              else f"{results['queued']} of {results['size']} in the time allowed")
    lines = [
        f"sweep of {results['size']} runs (grid, one POST"
        + (", pool paused" if results["paused"] else "") + f"), "
        f"{results['machine']['cpus']} CPUs",
        f"  202 after                  {results['accepted_s']:>8.2f} s   (goal < 5 s)",
        f"  all QUEUED after {since:<10} {queued}   (goal < 20 s)",
        f"  QUEUED per second          {results['queued_per_s']}",
        f"  web worker RSS growth      {results['web_worker_rss_growth_mib']:>8.1f} MiB",
        f"  web worker peak (VmHWM)    {results['web_worker_peak_mib']:>8.1f} MiB",
        f"  counts                     {results['counts']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
