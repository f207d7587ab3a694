"""Start a worker of one pool:  python -m workers --pool local [--target local]

It consumes ``pool.<name>`` (job specs, and polls for targets with one front door) and, for
targets whose jobs live on one host, ``pool.<name>.<host>``. Needs ORCH_BROKER_URL and its
target; nothing else."""

from __future__ import annotations

import argparse
import os

from workers.contract import HOST_BOUND_TARGETS, host_queue, pool_queue, this_host


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__.split("\n")[0])
    parser.add_argument("--pool", required=True, help="the pool this worker serves")
    parser.add_argument("--target", help="the pool's target kind (default: the pool's name "
                        "if it is a target kind, e.g. 'local')")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="tasks at once (submissions and polls; running jobs hold none)")
    parser.add_argument("--loglevel", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    target = args.target or args.pool.split("-")[0]
    os.environ["ORCH_POOL"], os.environ["ORCH_TARGET"] = args.pool, target
    queues = [pool_queue(args.pool)]
    if target in HOST_BOUND_TARGETS:
        queues.append(host_queue(args.pool, this_host()))

    from workers.celery_app import app  # after ORCH_POOL is set: the heartbeat reads it

    app.worker_main([
        "worker", "--pool=threads", f"--concurrency={args.concurrency}",
        f"--queues={','.join(queues)}", f"--hostname={args.pool}@{this_host()}",
        f"--loglevel={args.loglevel}", "--without-gossip", "--without-mingle",
    ])


if __name__ == "__main__":
    main()
