"""What every drill does, written once: start the product's real processes against the private
database and broker, run a batch of jobs through the REST API, and check every process.

A drill is: ``stack.start()``, ``ids = stack.submit(n, ...)``, inject one fault, then
``stack.check(expected)``, which asserts for every process

- the terminal state (and exit code) the user expects,
- exactly one job on the target (``Backend.jobs``: for the local target, the start lines the
  job itself appends to a ledger), and the same start line exactly once in the kept log,
- an event history that only moves forward, with no gap,
- no job process left behind (``Backend.orphans``).

The target is a :class:`Backend` (the local one is ``local_backend``). A drill for another
target (Slurm, Docker, ECS) adds one module with its backend (pipeline files, how to count its
jobs and find its leftovers) and its drill, and reuses everything else.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import requests

from testbed import parts
from testbed.services import ROOT, Service, free_port, wait_until
from tests.drills.infra import PrivatePostgres, PrivateRabbit
from workers.contract import (
    CONTROL_QUEUE,
    HOST_BOUND_TARGETS,
    State,
    can_move,
    host_queue,
    is_terminal,
    pool_queue,
    this_host,
)

# How fast the control plane works during drills: a poll round every half second, a heartbeat
# every second (a worker is "down" after three missed), a PENDING process republished after 2 s.
DRILL_SETTINGS = {
    "ORCH_POLL_INTERVAL_S": "0.5",
    "ORCH_HEARTBEAT_INTERVAL_S": "1",
    "ORCH_LOST_GRACE_S": "60",
    "DEBUG": "false",
    "SECRET_KEY": "drill-secret-key-0123456789-0123456789-0123456789-0123456789",
    "LOG_LEVEL": "INFO",
    "PYTHONUNBUFFERED": "1",
}
# Job output start line: "start <process id> <pid>".
START = "start {}"


def write_pipeline(directory: Path, name: str, *, target: str, pool: str, run: dict,
                   description: str, cpus: float = 1) -> None:
    """A drill pipeline: its job notes its start, sleeps ``seconds`` and exits ``exit_code``
    (its config)."""
    definition = {
        "name": name, "version": "1", "target": target, "pool": pool,
        "description": description, "run": run,
        "resources": {"cpus": cpus, "memory": "64M", "time_limit": "5m"},
        "config_schema": {
            "type": "object", "additionalProperties": False,
            "properties": {"seconds": {"type": "integer", "minimum": 0},
                           "exit_code": {"type": "integer"}},
        },
        "defaults": {"seconds": 1, "exit_code": 0},
    }
    (directory / f"{name}.yaml").write_text(json.dumps(definition))


def sh_job(note_start: str) -> str:
    """The sh script of a drill job: ``note_start`` (its start line), then it sleeps and exits
    as its config says, read from the config file as data."""
    return (
        note_start
        + "n() { sed -n \"s/.*\\\"$1\\\": *\\([0-9]*\\).*/\\1/p\" \"$ORCH_CONFIG_FILE\"; }\n"
        'sleep "$(n seconds)"\n'
        "echo done\n"
        'exit "$(n exit_code)"\n'
    )


@dataclass
class Expect:
    """What one process must end as. ``starts``: how many jobs on the target are right (a
    process stopped before it reached its target may have been started late and cancelled).
    ``also``: other end states that are right too, where the fault races the job's own end."""

    state: State
    exit_code: int | None = None
    starts: tuple[int, ...] = (1,)
    also: tuple[State, ...] = ()


class Backend:
    """One target as the drills see it."""

    target = ""
    pool = ""
    pipeline = "drill-job"

    def write_pipelines(self, directory: Path) -> None:
        raise NotImplementedError

    def jobs(self, process_id: str) -> int:
        """How many jobs the target started for the process."""
        raise NotImplementedError

    def orphans(self) -> list[str]:
        """Job processes (containers, Slurm jobs, tasks) of this drill still alive."""
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        return {}

    def worker_argv(self) -> list[str]:
        return parts.worker_argv(self.pool, self.target)

    def after_submit(self, process_id: str, config: dict) -> None:
        """Called once a process is created (an emulated target learns what its job does)."""

    def cleanup(self) -> None:
        """Remove what a failed drill left on the target (only what the drill started)."""


@dataclass
class Platform:
    """The session's private PostgreSQL and RabbitMQ, and the template database every drill
    copies (migrated, with one staff OAuth2 client)."""

    postgres: PrivatePostgres
    rabbit: PrivateRabbit
    template: str
    client_id: str
    client_secret: str


class Api:
    """The REST API as a client uses it, with a token from the client-credentials grant."""

    def __init__(self, base: str, client_id: str, client_secret: str):
        self.base = base
        self.session = requests.Session()
        self.credentials = (client_id, client_secret)

    def login(self) -> None:
        answer = self.session.post(f"{self.base}/o/token/", auth=self.credentials,
                                   data={"grant_type": "client_credentials"}, timeout=30)
        answer.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def get(self, path: str, **params):
        answer = self.session.get(f"{self.base}{path}", params=params, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def post(self, path: str, body: dict | None = None):
        answer = self.session.post(f"{self.base}{path}", json=body, timeout=60)
        assert answer.status_code in (200, 201), f"POST {path}: {answer.status_code} {answer.text}"
        return answer.json()


@dataclass
class DrillStack:
    """The product's processes for one drill, on its own database copy and work dir."""

    name: str
    platform: Platform
    backend: Backend
    run_dir: Path
    services: dict[str, Service] = field(default_factory=dict)
    database: str = ""
    api: Api | None = None
    started_at: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        self.database = f"drill_{self.name}"
        self.platform.postgres.create_database(self.database, self.platform.template)
        self.pipelines_dir = self.run_dir / "pipelines"
        self.backend.write_pipelines(self.pipelines_dir)
        self.port = free_port()
        self.env = {
            **os.environ, **DRILL_SETTINGS, **self.backend.worker_env(),
            "DATABASE_URL": self.platform.postgres.url(self.database),
            "ORCH_BROKER_URL": self.platform.rabbit.url,
            "ORCH_PIPELINES_DIR": str(self.pipelines_dir),
            "DJANGO_SETTINGS_MODULE": "orchestration.settings",
        }
        purge_queues(self.platform.rabbit.url, self.backend.pool, self.backend.target)

    # --- processes --------------------------------------------------------------------------

    def service(self, name: str, argv: list[str], env: dict | None = None) -> Service:
        self.services[name] = Service(name, argv, env or self.env, self.run_dir)
        return self.services[name]

    def start(self, worker_argv: list[str] | None = None) -> DrillStack:
        """Web, control consumer, beat and one worker of the backend's pool; returns once the
        API answers and the pool's worker has reported."""
        # One process with 8 threads, and 120 s before gunicorn calls a silent one stuck:
        # a drill's fault may hold a request that long.
        web = parts.web(self.env, self.run_dir, self.port, workers=1, threads=8, timeout=120)
        self.services["web"] = web.start()
        self.services["control"] = parts.control_consumer(self.env, self.run_dir).start()
        self.services["beat"] = parts.beat(self.env, self.run_dir).start()
        self.service("worker", worker_argv or self.backend.worker_argv()).start()
        self.api = Api(f"http://127.0.0.1:{self.port}", self.platform.client_id,
                       self.platform.client_secret)
        web.wait_ready(60)
        self.api.login()
        self.services["control"].wait_for(self._pipeline_loaded, 60,
                                          "the control consumer to load the pipelines")
        self.wait_pool("up")
        return self

    def _pipeline_loaded(self) -> bool:
        answer = self.api.session.get(f"{self.api.base}/api/pipelines/{self.backend.pipeline}/",
                                      timeout=10)
        return answer.status_code == 200

    def pool(self) -> dict:
        return next(p for p in self.api.get("/api/pools/") if p["name"] == self.backend.pool)

    def wait_pool(self, status: str, timeout: float = 30) -> dict:
        return wait_until(lambda: (p := self.pool())["status"] == status and p, timeout,
                          f"pool {self.backend.pool} to be {status}", interval=0.2)

    def stop_all(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()

    # --- jobs -------------------------------------------------------------------------------

    def submit(self, count: int, **config) -> list[str]:
        """``count`` processes of the backend's pipeline, posted through the API."""
        ids = []
        for _ in range(count):
            pid = self.api.post("/api/processes/", {"pipeline": self.backend.pipeline,
                                                    "used_config": config})["id"]
            self.backend.after_submit(pid, config)
            ids.append(pid)
        return ids

    def states(self, ids: list[str]) -> dict[str, str] | None:
        """Each process's state, read from the database (None while it is unreachable)."""
        try:
            conn = psycopg2.connect(self.platform.postgres.url(self.database), connect_timeout=3)
        except psycopg2.OperationalError:
            return None
        try:
            with conn, conn.cursor() as cursor:
                cursor.execute("SELECT id::text, state FROM processes_process WHERE id::text = "
                               "ANY(%s)", (ids,))
                return dict(cursor.fetchall())
        except psycopg2.Error:
            return None
        finally:
            conn.close()

    def wait_states(self, ids: list[str], states: set[str], timeout: float = 60,
                    count: int | None = None) -> dict[str, str]:
        """Until ``count`` (default: all) of ``ids`` are in one of ``states``."""
        need = len(ids) if count is None else count

        def reached():
            now = self.states(ids)
            return now is not None and sum(s in states for s in now.values()) >= need and now

        return wait_until(reached, timeout,
                          f"{need} of {len(ids)} processes in {sorted(states)}", interval=0.2)

    def wait_started(self, ids: list[str], timeout: float = 60) -> None:
        """Until the job of each process has started on the target (its start is counted)."""
        wait_until(lambda: all(self.backend.jobs(pid) for pid in ids), timeout,
                   f"{len(ids)} jobs to start", interval=0.2)

    def wait_ended(self, ids: list[str], timeout: float = 120) -> dict[str, str]:
        def ended():
            now = self.states(ids)
            return now is not None and all(is_terminal(s) for s in now.values()) and now

        try:
            return wait_until(ended, timeout, "every process to end", interval=0.3)
        except AssertionError:
            raise AssertionError(f"not all ended in {timeout} s: {self.states(ids)}; "
                                 f"logs in {self.run_dir}") from None

    # --- the checks every drill makes -------------------------------------------------------

    def check(self, expected: dict[str, Expect], timeout: float = 90) -> dict:
        """Assert, for every process, its end, its one job, its history and no leftovers."""
        self.wait_ended(list(expected), timeout)
        problems = []
        for pid, want in expected.items():
            problems += [f"{pid}: {p}" for p in self._check_one(pid, want)]
        try:
            wait_until(lambda: not self.backend.orphans(), 15, "job processes to exit")
        except AssertionError:
            problems.append(f"left behind: {self.backend.orphans()}")
        assert not problems, "\n".join(problems) + f"\n(logs in {self.run_dir})"
        return self.summary(expected)

    def _check_one(self, pid: str, want: Expect) -> list[str]:
        problems = []
        process = self.api.get(f"/api/processes/{pid}/")
        if process["state"] != want.state and process["state"] not in want.also:
            problems.append(f"ended {process['state']} ({process['message']}), "
                            f"expected {' or '.join([want.state, *want.also])}")
        if want.exit_code is not None and process["exit_code"] != want.exit_code:
            problems.append(f"exit code {process['exit_code']}, expected {want.exit_code}")
        jobs = self.backend.jobs(pid)
        if jobs not in want.starts:
            problems.append(f"{jobs} jobs on the target, expected {want.starts}")
        history = self.api.get(f"/api/processes/{pid}/events/")
        problems += history_problems(history)
        if jobs and process["state"] != State.LOST:
            text = self._whole_log(pid)
            if text.count(START.format(pid)) != 1:
                problems.append(f"the kept log shows the start {text.count(START.format(pid))} "
                                f"times: {text[:300]!r}")
        return problems

    def _whole_log(self, pid: str) -> str:
        def complete():
            log = self.api.get(f"/api/processes/{pid}/logs/", offset=0)
            return log["complete"] and log

        return wait_until(complete, 20, f"the whole log of {pid}", interval=0.3)["text"]

    def summary(self, expected: dict[str, Expect]) -> dict:
        """The drill's figures: processes, jobs, and how many ended in each state."""
        states: dict[str, int] = {}
        for state in (self.states(list(expected)) or {}).values():
            states[state] = states.get(state, 0) + 1
        return {"drill": self.name, "processes": len(expected), "states": states,
                "jobs": sum(self.backend.jobs(pid) for pid in expected),
                "seconds": round(time.monotonic() - self.started_at, 1)}


def history_problems(history: list[dict]) -> list[str]:
    """An event history moves forward from PENDING, each event starting where the last ended."""
    if not history:
        return ["no event history"]
    problems = []
    if history[0]["from"] or history[0]["to"] != State.PENDING:
        problems.append(f"history starts with {history[0]}")
    for before, after in itertools.pairwise(history):
        if after["from"] != before["to"]:
            problems.append(f"history gap: {before['to']} then {after['from']} -> "
                            f"{after['to']}")
        if not can_move(after["from"], after["to"]):
            problems.append(f"history moves back: {after['from']} -> {after['to']}")
    return problems


def purge_queues(broker_url: str, pool: str, target: str) -> None:
    """Delete the drill's queues on the private broker: nothing of an earlier drill remains."""
    import kombu

    names = [CONTROL_QUEUE, pool_queue(pool)]
    if target in HOST_BOUND_TARGETS:
        names.append(host_queue(pool, this_host()))
    with kombu.Connection(broker_url, connect_timeout=10) as conn:
        for name in names:  # RabbitMQ deletes an absent queue without complaint
            conn.default_channel.queue_delete(name)


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stderr[-3000:]}")
    return done.stdout
