"""Start a worker of one pool:  python -m orchestration_worker --pool local [--target local]

It consumes ``pool.<name>`` (job specs, and polls for targets with one front door) and, for
targets whose jobs live on one host, ``pool.<name>.<host>``. Needs ORCH_BROKER_URL and its
target; nothing else."""

from __future__ import annotations

import argparse
import os

from .contract import HOST_BOUND_TARGETS, host_queue, pool_queue, this_host
from .environment import load_env
from .executors import EXECUTORS


def target_of(pool: str) -> str | None:
    """The target kind a pool's name starts with: the longest kind that fits wins, so
    ``slurm-rest`` is slurm_rest and ``slurm-main`` is slurm."""
    name = pool.replace("-", "_")
    fits = [kind for kind in EXECUTORS if name == kind or name.startswith(kind + "_")]
    return max(fits, key=len, default=None)


def main(argv: list[str] | None = None) -> None:
    load_env()  # .env means the same to a worker as to the control plane
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--pool", required=True, help="the pool this worker serves")
    parser.add_argument("--target", choices=sorted(EXECUTORS),
                        help="the pool's target kind (default: read from the pool's name: "
                        "local, docker-main, slurm-rest, ecs-spot)")
    parser.add_argument("--name",
                        help="this worker's name, unique on its host (default: the pool's "
                        "name); two workers of one pool on one host need two names")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="tasks at once (submissions and polls; running jobs hold none)")
    parser.add_argument("--loglevel", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    target = args.target or target_of(args.pool)
    if target is None:
        parser.error(f"cannot tell the target of pool {args.pool!r} from its name: add --target")
    os.environ["ORCH_POOL"], os.environ["ORCH_TARGET"] = args.pool, target
    queues = [pool_queue(args.pool)]
    if target in HOST_BOUND_TARGETS:
        queues.append(host_queue(args.pool, this_host()))

    from .celery_app import app  # after ORCH_POOL is set: the heartbeat reads it

    app.worker_main([
        "worker", "--pool=threads", f"--concurrency={args.concurrency}",
        f"--queues={','.join(queues)}", f"--hostname={args.name or args.pool}@{this_host()}",
        f"--loglevel={args.loglevel}", "--without-gossip", "--without-mingle",
    ])


if __name__ == "__main__":
    main()
