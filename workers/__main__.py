"""Start a worker of one pool:  python -m orchestration_worker --pool local [--target local]

It consumes ``pool.<name>`` (job specs, and polls for targets with one front door) and, for
targets whose jobs live on one host, ``pool.<name>.<host>``. Needs ORCH_BROKER_URL, its
target and its keys (``workers.credential``); nothing else.

A worker holds none of the control plane's settings: the database URL, Django's settings and
the master signing keys are dropped from its environment as it starts (so no job it starts
inherits them), and a worker whose own environment held one starts again without it, so
``/proc/<pid>/environ`` does not show it either."""

from __future__ import annotations

import argparse
import os
import sys

from . import credential, secrets
from .contract import HOST_BOUND_TARGETS, host_queue, pool_queue, this_host
from .environment import load_env
from .executors import EXECUTORS

# The control plane's own settings: a worker needs none of them (promise 1).
CONTROL_PLANE_SETTINGS = frozenset({"DATABASE_URL", "SECRET_KEY"})
CONTROL_PLANE_PREFIXES = ("DJANGO_",)
# Keys a worker reads once as it starts and then holds only in memory, derived.
KEY_SETTINGS = frozenset({"ORCH_SIGNING_KEYS", credential.CREDENTIAL_ENV})
# Master secrets keys given in the environment: the worker keeps only its pool's keys.
SECRETS_MASTER_SETTINGS = frozenset({"ORCH_SECRETS_KEYS", "ORCH_SECRETS_KEY"})


def target_of(pool: str) -> str | None:
    """The target kind a pool's name starts with: the longest kind that fits wins, so
    ``slurm-rest`` is slurm_rest and ``slurm-main`` is slurm."""
    name = pool.replace("-", "_")
    fits = [kind for kind in EXECUTORS if name == kind or name.startswith(kind + "_")]
    return max(fits, key=len, default=None)


def not_for_workers(environ) -> list[str]:
    """The settings of ``environ`` a worker must not keep."""
    return [name for name in environ
            if name in CONTROL_PLANE_SETTINGS or name in KEY_SETTINGS
            or name in SECRETS_MASTER_SETTINGS or name.startswith(CONTROL_PLANE_PREFIXES)]


def main(argv: list[str] | None = None) -> None:
    inherited = dict(os.environ)  # what this process was started with, before .env
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
    worker = credential.identity(args.name, args.pool)
    try:
        held = credential.setup(args.pool, worker)
    except credential.CredentialError as exc:
        raise SystemExit(f"{parser.prog}: {exc}") from None
    try:
        _keep_pool_secrets_keys_only(args.pool)
    except secrets.SecretsError as exc:
        raise SystemExit(f"{parser.prog}: {exc}") from None
    for name in not_for_workers(os.environ):
        del os.environ[name]
    if argv is None and not_for_workers(inherited):
        _start_again_without(not_for_workers(inherited), inherited, held)
    if held is None:
        print(f"{parser.prog}: no signing key yet (ORCH_WORKER_CREDENTIAL, ORCH_SIGNING_KEYS "
              "or the control plane's key file): this worker runs and reports nothing until "
              "the key file is made", file=sys.stderr)
    os.environ["ORCH_POOL"], os.environ["ORCH_TARGET"] = args.pool, target
    queues = [pool_queue(args.pool)]
    if target in HOST_BOUND_TARGETS:
        queues.append(host_queue(args.pool, this_host()))

    from .celery_app import app  # after ORCH_POOL is set: the heartbeat reads it

    app.worker_main([
        "worker", "--pool=threads", f"--concurrency={args.concurrency}",
        f"--queues={','.join(queues)}", f"--hostname={worker}",
        f"--loglevel={args.loglevel}", "--without-gossip", "--without-mingle",
        "--without-heartbeat",  # no Celery events: a pool's broker user may not send them
    ])


def _keep_pool_secrets_keys_only(pool: str) -> None:
    """Master secrets keys given in the environment become this pool's keys
    (``ORCH_POOL_SECRETS_KEYS``): the masters are then dropped, so the worker, and any job
    that reached it, opens only its own pool's secrets."""
    if any(os.environ.get(name) for name in SECRETS_MASTER_SETTINGS):
        own = os.environ.get(secrets.POOL_KEYS_VAR, "")
        derived = secrets.pool_keys_text(pool)
        os.environ[secrets.POOL_KEYS_VAR] = ",".join(k for k in (own, derived) if k)


def _start_again_without(names: list[str], inherited: dict[str, str],
                         held: credential.Credential | None) -> None:
    """Replace this process with the same command, started without ``names``: what a
    process was started with stays readable in /proc/<pid>/environ whatever it deletes.
    Its keys go through an inherited pipe, read once and closed by the new process."""
    env = {k: v for k, v in inherited.items() if k not in names}
    if pool_keys := os.environ.get(secrets.POOL_KEYS_VAR):
        env[secrets.POOL_KEYS_VAR] = pool_keys
    if held is not None:
        read, write = os.pipe()
        os.write(write, held.to_text().encode())
        os.close(write)
        os.set_inheritable(read, True)
        env[credential.CREDENTIAL_FD_ENV] = str(read)
    # sys.orig_argv, not `-m workers`: a wrapper (the drills' chaos worker) starts again too.
    # (S606 audits every exec: this one is our own interpreter with our own command line.)
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)  # noqa: S606


if __name__ == "__main__":
    main()
