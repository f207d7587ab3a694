"""A private PostgreSQL cluster and a private RabbitMQ node for the drills.

The drills restart the database and the broker, so they never use the machine's own: each
session starts a cluster (``initdb`` + ``pg_ctl``) and a node (``rabbitmq-server`` with its own
node name, ports, data and log dirs, and its own ``epmd``) in a temporary directory, on free
ports, and stops them by their own pid or stop command. Nothing else on the machine is touched.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import psycopg2
from psycopg2 import sql

from testbed.services import free_port, wait_until

wait_for = wait_until  # the drills' name for it: tests/drills import both from here


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _find_binary(name: str, patterns: list[str]) -> str:
    found = shutil.which(name) or next(
        iter(sorted((p for pattern in patterns for p in glob.glob(pattern)), reverse=True)), None)
    if not found:
        raise RuntimeError(f"the drills need {name} (Debian: apt-get install postgresql "
                           "rabbitmq-server; deploy/services.sh installs both)")
    return found


class PrivatePostgres:
    """One PostgreSQL cluster in ``base``, listening on 127.0.0.1:``port`` only.

    initdb refuses to run as root: as root the cluster belongs to the ``postgres`` user.
    """

    def __init__(self, base: Path):
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        bindir = Path(_find_binary("initdb", ["/usr/lib/postgresql/*/bin/initdb"])).parent
        self.initdb, self.pg_ctl = str(bindir / "initdb"), str(bindir / "pg_ctl")
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            self.as_owner = ["runuser", "-u", "postgres", "--"]
            shutil.chown(base, "postgres")

    def _run(self, argv: list[str], timeout: float = 60) -> None:
        done = subprocess.run([*self.as_owner, *argv], capture_output=True, text=True,
                              timeout=timeout, cwd=self.base)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr or done.stdout}")

    def init(self) -> PrivatePostgres:
        self._run([self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres",
                   "-E", "UTF8", "--no-sync"])
        return self

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off -c max_connections=200")
        self._run([self.pg_ctl, "-D", str(self.data), "-o", options,
                   "-l", str(self.base / "postgres.log"), "-w", "-t", "60", "start"])

    def stop(self, mode: str = "fast") -> None:
        """``fast``: what an operator's restart does; ``immediate``: a crash (recovery on start)."""
        if (self.data / "postmaster.pid").exists():
            self._run([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                dbname=database, connect_timeout=5)
        conn.autocommit = True
        return conn

    def create_database(self, name: str, template: str | None = None) -> None:
        self.drop_database(name)
        conn = self.connect()
        try:
            query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.cursor().execute(query)
        finally:
            conn.close()

    def drop_database(self, name: str) -> None:
        conn = self.connect()
        try:
            conn.cursor().execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
        finally:
            conn.close()


class PrivateRabbit:
    """One RabbitMQ node in ``base`` on 127.0.0.1:``port``, with its own epmd and no plugins.

    The node is the child of ``rabbitmq-server``'s script, which stops it cleanly on SIGTERM
    (what ``systemctl restart`` does); its queues and persistent messages survive a restart.
    """

    def __init__(self, base: Path):
        self.base = base
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.server = _find_binary("rabbitmq-server",
                                   ["/usr/lib/rabbitmq/bin/rabbitmq-server"])
        if self.server.startswith("/usr/sbin/"):  # Debian's wrapper switches user: skip it
            self.server = "/usr/lib/rabbitmq/bin/rabbitmq-server"
        self.epmd_bin = _find_binary("epmd", ["/usr/lib/erlang/erts-*/bin/epmd"])
        self.epmd: subprocess.Popen | None = None
        self.proc: subprocess.Popen | None = None
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            "log.console = true\nlog.file = false\n"
        )
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        base = str(self.base)
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": base,  # the Erlang cookie is written here
            "RABBITMQ_CONF_ENV_FILE": f"{base}/rabbitmq-env.conf",
            "RABBITMQ_CONFIG_FILE": f"{base}/rabbitmq.conf",
            "RABBITMQ_ADVANCED_CONFIG_FILE": f"{base}/advanced.config",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{base}/enabled_plugins",
            "RABBITMQ_NODENAME": f"drill{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": f"{base}/mnesia",
            "RABBITMQ_LOG_BASE": f"{base}/log",
            "RABBITMQ_PID_FILE": f"{base}/rabbitmq.pid",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
        }

    def start(self, wait: bool = True) -> None:
        env = self._env()
        if self.epmd is None or self.epmd.poll() is not None:
            self.epmd = subprocess.Popen(
                [self.epmd_bin, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            wait_until(lambda: port_open(self.epmd_port), 10, "the private epmd", interval=0.1)
        log = open(self.base / "rabbitmq.out", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([self.server], env=env, cwd=self.base, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 90) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("the private RabbitMQ node exited: "
                                   + (self.base / "rabbitmq.out").read_text()[-2000:])
            return port_open(self.port)

        wait_until(ready, timeout, "the private RabbitMQ node", interval=0.1)

    def stop(self) -> None:
        """Stop the node the way a service manager does (SIGTERM), by its own pid."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        if self.epmd is not None and self.epmd.poll() is None:
            self.epmd.terminate()
            self.epmd.wait(timeout=10)
