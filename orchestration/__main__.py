"""Start one part of the control plane:  python -m orchestration web|control|beat|prepare

- ``web``: the REST API and the admin, served by gunicorn;
- ``control``: the control consumer, the Celery worker of the ``control`` queue that applies
  the workers' events and heartbeats;
- ``beat``: the Celery beat that runs the poll loop and writes the beat's heartbeat;
- ``prepare``: what ``web`` needs once before it serves: the database migrated, the static
  files collected, the shipped pipelines loaded.

Each part's command line is written here and only here: deploy/stack.sh, docker-compose.yml,
the Dockerfile, the tests, the drills and the benchmark all start the parts through this
module (the workers have theirs: ``python -m workers``). Run it from the checkout's root;
settings come from the environment and ``.env`` as for every part.

``web`` replaces this process with gunicorn (same pid, so a pid file or a process group that
names it holds the server, and gunicorn's master holds nothing of ours); ``control`` and
``beat`` run the Celery app in this process.
"""

from __future__ import annotations

import argparse
import os
import sys

from workers.contract import CONTROL_QUEUE

PROG = f"python -m {__package__}"


def web(args: argparse.Namespace) -> None:
    """Serve the REST API and the admin with gunicorn: threads, connections kept alive 30 s,
    5 s for the requests in flight on a stop."""
    argv = [
        sys.executable, "-m", "gunicorn", "orchestration.wsgi",
        "--bind", f"{args.host}:{args.port}",
        "--workers", str(args.workers), "--threads", str(args.threads),
        "--timeout", str(args.timeout),
        # Keep-alive past gunicorn's 2 s: a client posting every 2 s otherwise reuses a
        # connection the server is closing at that moment and gets a reset for its POST.
        "--keep-alive", "30",
        "--graceful-timeout", "5",
        "--access-logfile", args.access_log,
        "--limit-request-line", str(args.limit_request_line),
    ]
    os.execv(sys.executable, argv)  # noqa: S606 - an argv list of our own, no shell


def control(args: argparse.Namespace) -> None:
    """Consume the control queue: the workers' events and heartbeats and the beat's poll
    rounds, applied to the database."""
    from orchestration.celery import app

    app.worker_main([
        "worker", f"--queues={CONTROL_QUEUE}", "--pool=threads",
        f"--concurrency={args.concurrency}", f"--hostname={args.hostname}",
        "--without-gossip", "--without-mingle", f"--loglevel={args.loglevel}",
    ])


def beat(args: argparse.Namespace) -> None:
    """Send the periodic tasks of CELERY_BEAT_SCHEDULE (the poll loop) to the control
    consumer, and write the beat's heartbeat."""
    from orchestration.celery import app

    schedule = [f"--schedule={args.schedule}"] if args.schedule else []
    app.start(["beat", f"--loglevel={args.loglevel}", *schedule])


def prepare(args: argparse.Namespace) -> None:
    """What web needs once before it serves: the database migrated, the static files
    collected, the pipelines of ORCH_PIPELINES_DIR loaded."""
    import django
    from django.core.management import call_command
    from django.core.management.base import CommandError

    django.setup()
    try:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("load_pipelines")
    except CommandError as exc:
        raise SystemExit(f"{PROG} prepare: {exc}") from None


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default in its help, unless it has none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    parsers = argparse.ArgumentParser(prog=PROG, description=__doc__.split(":")[0] + ".")
    parts = parsers.add_subparsers(dest="part", required=True, metavar="PART")

    def add(start, summary: str) -> argparse.ArgumentParser:
        part = parts.add_parser(start.__name__, help=summary, description=start.__doc__,
                                formatter_class=_Defaults)
        part.set_defaults(start=start)
        return part

    part = add(web, "the REST API and the admin (gunicorn)")
    part.add_argument("--host", default="127.0.0.1",
                      help="the address to listen on (0.0.0.0 in a container)")
    part.add_argument("--port", type=int, default=8000, help="the port to listen on")
    part.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    part.add_argument("--threads", type=int, default=4, help="threads per worker process")
    part.add_argument("--timeout", type=int, default=30,
                      help="seconds a silent worker process lives before gunicorn restarts it")
    part.add_argument("--access-log", default="-", help="access log file ('-': stdout)")
    part.add_argument("--limit-request-line", type=int, default=4094,
                      help="longest request line gunicorn reads (a longer one is its own "
                           "HTML 414); 0: no limit, Django answers")

    part = add(control, "the control consumer (the Celery worker of the control queue)")
    part.add_argument("--concurrency", type=int, default=4, help="threads handling messages")
    part.add_argument("--hostname", default="control@%h",
                      help="the consumer's Celery node name (%%h: this host's name)")
    part.add_argument("--loglevel", default="INFO", help="Celery's log level")

    part = add(beat, "the Celery beat (the poll loop, the beat's heartbeat)")
    part.add_argument("--schedule", help="the beat's state file (default: "
                      "CELERY_BEAT_SCHEDULE_FILENAME of the settings, var/celerybeat-schedule)")
    part.add_argument("--loglevel", default="INFO", help="Celery's log level")

    add(prepare, "migrate, collect static files, load the shipped pipelines")
    return parsers


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.start(args)


if __name__ == "__main__":
    main()
