"""The soak of the embedded default: the quick start's stack (SQLite and the embedded broker)
under a steady trickle of runs for a long while, then every run checked.

    deploy/quickstart.sh                                  # starts the stack, runs `hello`
    .venv/bin/python -m bench.soak --minutes 60 --every 5

It passes when no process of the stack died or restarted (their pids in var/run/ are the ones
it started with), no control log holds an unrecoverable error, and every run it posted ended
as its job did (hello and sleep SUCCEEDED, fail FAILED with its exit code) with its whole
history: QUEUED, SUBMITTED and RUNNING recorded before its end, every step once. A result line
per check and a JSON summary go to stdout; the exit status is 1 when anything was lost.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR, LOG_DIR = ROOT / "var" / "run", ROOT / "var" / "log"
FATAL = ("Unrecoverable error", "CRITICAL")

# The trickle: what each run asks for and how it must end.
RUNS = [
    ({"pipeline": "hello", "used_config": {"name": "soak"}}, "SUCCEEDED", 0),
    ({"pipeline": "sleep", "used_config": {"seconds": 3}}, "SUCCEEDED", 0),
    ({"pipeline": "fail", "used_config": {"exit_code": 3}}, "FAILED", 3),
]
STEPS = ["PENDING", "QUEUED", "SUBMITTED", "RUNNING"]


def client_env() -> dict[str, str]:
    path = ROOT / "var" / "quickstart-client.env"
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.removeprefix("export ").strip(): v.strip().strip("'\"") for k, v in pairs}


class Api:
    def __init__(self, url: str):
        self.url, self.session = url, requests.Session()
        self.login()

    def login(self) -> None:
        """A new token; a soak outlives one (ACCESS_TOKEN_EXPIRE_SECONDS, an hour)."""
        creds = client_env()
        answer = self.session.post(f"{self.url}/o/token/",
                                   data={"grant_type": "client_credentials"},
                                   auth=(creds["ORCH_CLIENT_ID"], creds["ORCH_CLIENT_SECRET"]))
        answer.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs):
        answer = self.session.request(method, f"{self.url}{path}", timeout=30, **kwargs)
        if answer.status_code == 401:  # the token expired: once more with a new one
            self.login()
            answer = self.session.request(method, f"{self.url}{path}", timeout=30, **kwargs)
        return answer

    def get(self, path: str):
        answer = self.call("GET", path)
        answer.raise_for_status()
        return answer.json()

    def post(self, path: str, body: dict):
        answer = self.call("POST", path, json=body)
        if answer.status_code != 201:
            raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text}")
        return answer.json()


def stack_pids() -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in sorted(RUN_DIR.glob("*.pid"))}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def fatal_lines(since: dict[str, int]) -> list[str]:
    """Fatal log lines written since the soak began (``since``: each log's size then)."""
    found = []
    for log in LOG_DIR.glob("*.log"):
        with open(log, errors="replace") as f:
            f.seek(since.get(log.name, 0))
            found += [f"{log.name}: {line.strip()}" for line in f if any(m in line for m in FATAL)]
    return found


def check(api: Api, pid: str, state: str, exit_code: int | None) -> list[str]:
    """What is wrong with one finished run ([] when nothing)."""
    status = api.get(f"/api/processes/{pid}/status/")
    problems = []
    if status["state"] != state or status["exit_code"] != exit_code:
        problems.append(f"{pid}: {status['state']} exit {status['exit_code']}, "
                        f"expected {state} exit {exit_code}")
    steps = [e["to"] for e in api.get(f"/api/processes/{pid}/events/")]
    if steps != [*STEPS, state]:
        problems.append(f"{pid}: history {steps}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--every", type=float, default=5, help="seconds between two runs")
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('ORCH_PORT', 8000)}")
    args = parser.parse_args(argv)

    api = Api(args.url)
    pids = stack_pids()
    if not pids or not all(alive(p) for p in pids.values()):
        raise RuntimeError(f"the stack is not running: {pids}")
    log_sizes = {log.name: log.stat().st_size for log in LOG_DIR.glob("*.log")}
    started, posted = time.monotonic(), []
    end = started + args.minutes * 60
    for run in itertools.cycle(RUNS):
        if time.monotonic() >= end:
            break
        body, state, code = run
        posted.append((api.post("/api/processes/", body)["id"], state, code))
        dead = [name for name, pid in pids.items() if not alive(pid)]
        if dead:
            print(f"died during the soak: {', '.join(dead)}")
            break
        if len(posted) % 60 == 0:
            print(f"{(time.monotonic() - started) / 60:5.1f} min: {len(posted)} runs posted",
                  flush=True)
        time.sleep(args.every)
    soaked_s = time.monotonic() - started

    deadline = time.monotonic() + 300
    unfinished = [p for p, _, _ in posted]
    while unfinished and time.monotonic() < deadline:
        unfinished = [p for p in unfinished
                      if not api.get(f"/api/processes/{p}/status/")["finished"]]
        time.sleep(2)
    problems = [f"{p}: never finished" for p in unfinished]
    for pid, state, code in posted:
        if pid not in unfinished:
            problems += check(api, pid, state, code)
    restarted = [name for name, pid in pids.items() if stack_pids().get(name) != pid
                 or not alive(pid)]
    fatal = fatal_lines(log_sizes)
    summary = {
        "soaked_minutes": round(soaked_s / 60, 1), "runs": len(posted),
        "every_s": args.every, "unfinished": len(unfinished), "wrong": len(problems),
        "processes_died": restarted, "fatal_log_lines": len(fatal),
        "broker": api.get("/api/health/")["broker"]["detail"],
    }
    for line in problems[:50] + fatal[:20]:
        print(line)
    print(json.dumps(summary))
    return 1 if problems or restarted or fatal else 0


if __name__ == "__main__":
    sys.exit(main())
