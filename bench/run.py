"""One benchmark run: prepare, start the processes, measure every item, stop, report.

    .venv/bin/python -m bench            # the full size (about 10 minutes)
    .venv/bin/python -m bench --small    # CI's size: shows it still works (about 2 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import ClassVar

from bench import celery_baseline, phases, polling, report, setup, stack, usage
from testbed.services import ROOT, Service, WaitFailed, free_port, http_status
from workers.contract import CONTROL_QUEUE, host_queue, pool_queue, this_host

SIZES = {
    "full": {"submit_seconds": 5.0, "submit_rounds": 2, "e2e": 1000, "latency_samples": 30,
             "target_samples": 10, "scale_rows": 1_000_000, "reads": 300, "poll_handles": 1000},
    "small": {"submit_seconds": 0.5, "submit_rounds": 2, "e2e": 20, "latency_samples": 3,
              "target_samples": 2, "scale_rows": 5_000, "reads": 20, "poll_handles": 20},
}
CLIENTS = 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="CI's size: quick, not a figure")
    parser.add_argument("--database", default="orchestration_bench",
                        help="the bench's own PostgreSQL database (made if missing)")
    parser.add_argument("--vhost", default="orchestration-bench",
                        help="the bench's own RabbitMQ vhost (made if missing)")
    parser.add_argument("--start-engines", action="store_true",
                        help="start the container engine and the Slurm cluster first (as "
                        "deploy/test.sh does); otherwise their rows are measured only where "
                        "they already answer")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--docs", type=Path, default=None,
                        help="the Markdown page that keeps the latest table "
                             "(default: docs/benchmarks.md for the full size, none for --small)")
    for name, what in (("latency-samples", "local start-latency samples"),
                       ("target-samples", "Docker and Slurm start-latency samples"),
                       ("poll-handles", "live handles of the polling-cost scripts")):
        parser.add_argument(f"--{name}", type=int, help=f"{what} (default: the size's)")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the run's directory (process logs) after a success")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size_name = "small" if args.small else "full"
    size = dict(SIZES[size_name])
    for key in ("latency_samples", "target_samples", "poll_handles"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    with setup.run_dir("orchestration-bench-", say, args.keep_logs) as run_dir:
        run_dir.chmod(0o711)  # local jobs run as a user of their own, who must pass through it
        log_dir = run_dir / "logs"
        say(f"size {size_name}; logs in {log_dir}")
        results = measure(args, size_name, size, run_dir, log_dir)
        results.update(sub_benchmarks(args))
    table = report.table(results)
    print(table)
    written = report.write_json(results, args.json)
    say(f"JSON: {', '.join(map(str, written))}")
    docs = args.docs if args.docs is not None else (
        None if args.small else ROOT / "docs" / "benchmarks.md")
    if docs:
        report.write_docs(results, table, docs)
        say(f"table kept in {docs}")
    return 0


# Measured by modules of their own (each its own database, vhost and stack), run after the
# others so that the table has every goal's row: a sweep of this many runs, and the control
# plane's poll cycle.
SWEEP_SIZES = {"full": 10_000, "small": 200}


def sub_benchmarks(args) -> dict:
    """The figures of ``bench.sweep`` and ``bench.poll_cycle``, run as they are run alone;
    a module that fails leaves its rows saying so, not the whole run."""
    size = "small" if args.small else "full"
    runs = {
        "sweep": ["bench.sweep", "--size", str(SWEEP_SIZES[size]), "--paused",
                  "--database", f"{args.database}_sweep", "--vhost", f"{args.vhost}-sweep"],
        "poll_cycle": ["bench.poll_cycle", *(["--small"] if args.small else []),
                       "--database", f"{args.database}_poll", "--vhost", f"{args.vhost}-poll"],
    }
    found: dict = {}
    for key, argv in runs.items():
        say(f"{len(found) + 7}. {argv[0]}")
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            done = subprocess.run([sys.executable, "-m", *argv, "--json", out.name],
                                  cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                found[key] = {"missing": f"python -m {argv[0]} failed: "
                                         f"{(done.stderr.strip().splitlines() or ['?'])[-1]}"}
                continue
            found[key] = json.loads(Path(out.name).read_text())
    return found


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def measure(args, size_name: str, size: dict, run_dir: Path, log_dir: Path) -> dict:
    started = time.time()
    env = {**os.environ, **setup.services_env(args.database, args.vhost)}
    if args.start_engines:
        say("starting the container engine and the Slurm cluster")
        env.update(setup.engines_env())
    env.update(
        DEBUG="false",
        ORCH_PIPELINES_DIR=str(setup.pipelines_dir(run_dir)),
        ORCH_WORK_ROOT=str(run_dir / "work"),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    setup.django_setup(env)
    setup.database_prepare()
    say(f"generating {size['scale_rows']:,} processes (kept for the next run of this size)")
    scale = setup.scale_rows(size["scale_rows"])
    broker = env["ORCH_BROKER_URL"]
    queues = [CONTROL_QUEUE, pool_queue("local"), host_queue("local", this_host()),
              pool_queue(setup.IDLE_POOL_NAME)]
    purge(broker, queues)
    celery_baseline.purge(broker)

    results: dict = {"size": size_name, "started": started, "machine": report.machine(),
                     "versions": report.versions(),
                     "settings": {"clients": CLIENTS, **size,
                                  "poll_interval_s": float(env.get("ORCH_POLL_INTERVAL_S", 2.0))},
                     "scale": scale}
    port = free_port()
    with ExitStack() as running:
        def start(service: Service) -> Service:
            service.start()
            running.callback(service.stop)
            return service

        web = start(stack.web(env, log_dir, port))
        control = start(stack.control_consumer(env, log_dir))
        beat = start(stack.beat(env, log_dir))
        worker = start(stack.worker(env, log_dir, "local"))
        web.wait_for(lambda: http_status(f"http://127.0.0.1:{port}/api/health/") == 200, 60,
                     "the API to answer healthy")
        for service in (control, worker):
            service.wait_ready(60)
        time.sleep(1)
        footprint = {"worker_idle_kib": usage.rss_kib(worker.pid)}

        client_id, secret = setup.client_create("bench")
        token = setup.token_get(f"http://127.0.0.1:{port}", client_id, secret)

        say("1. submit throughput")
        results["submit"] = phases.submit_throughput(
            port, token, seconds=size["submit_seconds"], rounds=size["submit_rounds"],
            clients=CLIENTS, pipeline="noop-idle", cpu_of=lambda: usage.cpu_seconds(web.pid))
        purge(broker, [pool_queue(setup.IDLE_POOL_NAME)])

        say("3. start latency")
        results["start_latency"] = {"local": phases.start_latency(
            port, token, pipeline="noop", samples=size["latency_samples"], timeout=60)}
        for target in ("docker", "slurm"):
            results["start_latency"][target] = target_latency(
                target, env, log_dir, port, token, size["target_samples"], running)

        say("2. end to end, ours and raw Celery")
        cpu = CpuSplit({"web": web, "control consumer": control, "beat": beat,
                        "local worker (and the job starters it ran)": worker})
        ours = phases.end_to_end(port, token, count=size["e2e"], clients=CLIENTS,
                                 pipeline="noop", timeout=600)
        ours["cpu_ms_per_process"] = cpu.per(size["e2e"])
        base_worker = start(stack.baseline_worker(env, log_dir))
        base_worker.wait_ready(60)
        time.sleep(1)
        footprint["baseline_worker_idle_kib"] = usage.rss_kib(base_worker.pid)
        baseline = celery_baseline.run(broker, size["e2e"], clients=CLIENTS)
        base_worker.stop()
        results["end_to_end"] = {"ours": ours, "raw_celery": baseline,
                                 "ratio": ours["per_second"] / baseline["per_second"]}

        say("4. reads at scale")
        results["scale_reads"] = phases.scale_reads(
            port, setup.token_for(scale["client"]), scale["client"], reads=size["reads"])

        say("5. polling cost")
        results["polling"] = polling.measure(size["poll_handles"], run_dir)

        say("6. footprint")
        web_tree = usage.process_tree(web.pid)
        footprint.update(
            web_kib=sum(usage.rss_kib(pid) for pid in web_tree),
            web_processes=len(web_tree),
            web_worker_kib=max(usage.rss_kib(pid) for pid in web_tree if pid != web.pid),
            control_kib=usage.rss_kib(control.pid),
            beat_kib=usage.rss_kib(beat.pid),
            worker_after_kib=usage.rss_kib(worker.pid),
        )
        results["footprint"] = footprint
    results["seconds"] = time.time() - started
    return results


class CpuSplit:
    """Where the CPU of a phase went: our processes by name, PostgreSQL and RabbitMQ (all of
    their sessions), and the machine as a whole."""

    SHARED: ClassVar[dict[str, tuple[str, ...]]] = {
        "PostgreSQL (machine-wide)": ("postgres",),
        "RabbitMQ (machine-wide)": ("beam.smp", "erl_child_setup"),
    }

    def __init__(self, services: dict[str, Service]):
        self.services = services
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        now = {name: usage.cpu_seconds(service.pid, reaped=True)
               for name, service in self.services.items()}
        now.update({name: usage.cpu_by_name(comms) for name, comms in self.SHARED.items()})
        now["whole machine (every process)"] = usage.machine_busy_seconds()
        return now

    def per(self, count: int) -> dict[str, float]:
        """CPU milliseconds per processed item since this split was made."""
        now = self._now()
        return {name: round((now[name] - self.start[name]) * 1000 / count, 2) for name in now}


def purge(broker: str, names: list[str]) -> None:
    from kombu import Connection, Queue

    with Connection(broker) as conn:
        channel = conn.channel()
        for name in names:
            Queue(name, channel=channel).declare()
            channel.queue_purge(name)


def target_latency(target, env, log_dir, port, token, samples, running) -> dict:
    """Start latency on the docker or slurm target, where its executor and engine are here:
    the bench's sleeping pipeline on the target's shipped pool, each job stopped once it
    runs (so the next one finds the pool idle)."""
    from apps.pipelines.models import PipelineVersion

    name = f"bench-sleep-{target}"
    version = PipelineVersion.objects.filter(pipeline__name=name).select_related("pool").first()
    if version is None:
        return {"missing": f"no pool or pipeline of target {target} is shipped"}
    reason = polling.engine_missing(target)
    if reason:
        return {"missing": reason}
    pool = version.pool.name
    purge(env["ORCH_BROKER_URL"], [pool_queue(pool), host_queue(pool, this_host())])
    worker_env = dict(env)
    if target == "docker":
        worker_env["DOCKER_HOST"] = polling.docker_host() or ""
    service = stack.worker(worker_env, log_dir, pool).start()
    running.callback(service.stop)
    try:
        service.wait_ready(60)
        return phases.start_latency(port, token, pipeline=name, samples=samples, timeout=120,
                                    stop=True)
    except (RuntimeError, WaitFailed) as exc:
        return {"missing": f"failed: {exc}"}
    finally:
        service.stop()


if __name__ == "__main__":
    sys.exit(main())
