"""The ``keys`` service of docker-compose.yml: every part's keys and broker login, written once
the broker's users exist (the ``broker-users`` service, deploy/broker-users.sh).

    python deploy/compose/keys.py --users FILE --broker HOST:PORT --vhost VHOST
        --control DIR --owner USER [--worker POOL NAME@HOST DIR]...

- ``--control DIR`` (the web server's, the control consumer's and the beat's volume): the
  master signing key and the master secrets key (made once, mode 0600, owned by ``--owner``,
  at ORCH_SIGNING_KEY_FILE and ORCH_SECRETS_KEY_FILE), and ``control.env`` holding the
  control plane's broker URL (its own user, ``<vhost>.control``);
- ``--worker POOL NAME@HOST DIR`` (that worker's own volume): ``worker.env`` with the pool's
  broker URL (``<vhost>.pool.<POOL>``), the worker's credential and its pool's secrets keys,
  never a master key nor another role's password (``python manage.py worker_credential``
  prints the same two keys).

Run as root; a second run writes the same files (the keys are kept, the rest derived again).
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
import time
from pathlib import Path
from urllib.parse import quote

from cryptography.fernet import Fernet

from workers import secrets, signing
from workers.credential import CREDENTIAL_ENV, derive

WAIT_S = 300


def read_users(path: Path) -> dict[str, tuple[str, str]]:
    """role -> (user, password), from deploy/broker-users.sh's file, once it is there."""
    deadline = time.monotonic() + WAIT_S
    while not path.is_file():
        if time.monotonic() > deadline:
            sys.exit(f"keys: no broker users' file {path} after {WAIT_S} s")
        time.sleep(1)
    users = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 3 and not line.startswith("#"):
            users[fields[0]] = (fields[1], fields[2])
    return users


def write_private(path: Path, text: str, owner: pwd.struct_passwd | None = None) -> None:
    """``path`` holds ``text``, mode 0600 (owned by ``owner``), replaced whole."""
    draft = path.with_name(f".{path.name}.tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    if owner is not None:
        os.chown(draft, owner.pw_uid, owner.pw_gid)
    draft.replace(path)


def master_keys(owner: pwd.struct_passwd) -> None:
    """The master signing and secrets keys at their settings' paths: made once, kept."""
    signing.master_keys(create=True)
    secrets_file = Path(os.environ["ORCH_SECRETS_KEY_FILE"])
    if not secrets_file.exists():
        write_private(secrets_file, Fernet.generate_key().decode() + "\n", owner)
    signing_file = Path(os.environ["ORCH_SIGNING_KEY_FILE"])
    for path in (signing_file, secrets_file):
        os.chown(path, owner.pw_uid, owner.pw_gid)


def broker_url(users: dict[str, tuple[str, str]], role: str, broker: str, vhost: str) -> str:
    if role not in users:
        sys.exit(f"keys: no broker user for {role} (deploy/broker-users.sh makes it)")
    user, password = (quote(text, safe="") for text in users[role])
    return f"amqp://{user}:{password}@{broker}/{quote(vhost, safe='')}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="keys.py", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=Path, required=True)
    parser.add_argument("--broker", required=True, help="HOST:PORT of RabbitMQ")
    parser.add_argument("--vhost", required=True)
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--owner", required=True, help="the control plane's user")
    parser.add_argument("--worker", nargs=3, action="append", default=[],
                        metavar=("POOL", "NAME@HOST", "DIR"))
    args = parser.parse_args()
    owner = pwd.getpwnam(args.owner)
    users = read_users(args.users)
    os.chown(args.control, owner.pw_uid, owner.pw_gid)
    os.chmod(args.control, 0o700)
    master_keys(owner)
    write_private(args.control / "control.env",
                  f"ORCH_BROKER_URL={broker_url(users, 'control', args.broker, args.vhost)}\n",
                  owner)
    for pool, worker, directory in args.worker:
        held = derive(pool, worker, signing.master_keys())
        Path(directory).chmod(0o700)
        write_private(Path(directory) / "worker.env", "".join([
            f"ORCH_BROKER_URL={broker_url(users, f'pool.{pool}', args.broker, args.vhost)}\n",
            f"{CREDENTIAL_ENV}={held.to_text()}\n",
            f"{secrets.POOL_KEYS_VAR}={secrets.pool_keys_text(pool)}\n",
        ]))
        print(f"keys: {worker} of pool {pool}: broker user, credential, secrets keys")
    print(f"keys: the control plane's in {args.control}")


if __name__ == "__main__":
    main()
