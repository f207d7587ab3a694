"""Start a part of docker-compose.yml once what it needs is there:

    python deploy/compose/wait.py [--file PATH]... [--tcp HOST:PORT]... -- COMMAND...

waits until every file exists (not empty) and every address takes a TCP connection, then
replaces itself with COMMAND. Docker Compose already orders the parts by their
``depends_on`` conditions; Podman's compose support (podman-compose 1.0) starts them in order
without waiting, so each part waits here for what it reads first: its keys, the database, the
broker, the web server's migrations.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

TIMEOUT_S = float(os.environ.get("ORCH_COMPOSE_WAIT_S", "300"))


def ready(files: list[str], addresses: list[str]) -> list[str]:
    """What is still missing: a file, or an address that takes no connection."""
    missing = [path for path in files if not _nonempty(Path(path))]
    for address in addresses:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except OSError:
            missing.append(address)
    return missing


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(prog="wait.py", description=__doc__.split("\n")[0])
    parser.add_argument("--file", action="append", default=[], help="a file that must exist")
    parser.add_argument("--tcp", action="append", default=[], help="HOST:PORT to connect to")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND...")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    deadline = time.monotonic() + TIMEOUT_S
    said = None
    while missing := ready(args.file, args.tcp):
        if time.monotonic() > deadline:
            sys.exit(f"wait.py: still missing after {TIMEOUT_S:.0f} s: {', '.join(missing)}")
        if missing != said:
            print(f"wait.py: waiting for {', '.join(missing)}", file=sys.stderr, flush=True)
            said = missing
        time.sleep(1)
    os.execvp(command[0], command)  # noqa: S606 - the part's own command line, no shell


if __name__ == "__main__":
    main()
