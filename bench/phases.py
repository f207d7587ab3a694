"""The measurements that go through the API: submit throughput (item 1), end to end (2),
start latency (3) and reads at scale (4). Times of state changes are read from the rows the
control plane wrote (same machine, same clock), so how often the bench looks does not
change what it measures."""

from __future__ import annotations

import http.client
import json
import random
import time
from collections import Counter

from bench import load

PROCESSES = "/api/processes/"


class Api:
    """One keep-alive connection for sequential requests."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def headers(self, json_body: bool = False) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if json_body:
            headers["Content-Type"] = "application/json"
        return headers

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=self.headers(body is not None))
                answer = self.conn.getresponse()
                content = answer.read()
                return answer.status, json.loads(content) if content else {}
            except ConnectionError:  # gunicorn closed the idle keep-alive connection
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def _builder(port: int, token: str, method: str, path: str, body) -> callable:
    headers = {"Authorization": f"Bearer {token}"}
    host = f"127.0.0.1:{port}"
    return lambda n: load.request_bytes(method, path, host, headers, body(n))


def _check(result: load.Result, expected: int, what: str) -> None:
    bad = {k: v for k, v in result.statuses.items() if k != expected}
    if bad:
        sample = next((b for b in result.bodies), b"")[:300]
        raise RuntimeError(f"{what}: unexpected answers {bad} {sample!r}")


# --- 1. submit throughput -----------------------------------------------------------------------


def submit_throughput(port: int, token: str, *, seconds: float, rounds: int, clients: int,
                      pipeline: str, cpu_of=None) -> dict:
    """POST /api/processes/ against the plain DRF POST, in alternating rounds so both see
    the same machine. ``cpu_of()`` gives the web process's CPU seconds so far."""
    kinds = {
        "submit": _builder(port, token, "POST", PROCESSES,
                           lambda n: {"pipeline": pipeline, "used_config": {"name": f"r{n}"}}),
        "plain": _builder(port, token, "POST", "/bench/plain/",
                          lambda n: {"name": pipeline, "payload": {"name": f"r{n}"}}),
    }
    for kind, make in kinds.items():  # warm up: connections, caches, gunicorn threads
        _check(load.run("127.0.0.1", port, make, clients=clients, count=clients * 10,
                        keep_bodies=True), 201, kind)
    merged = {kind: load.Result() for kind in kinds}
    cpu = dict.fromkeys(kinds, 0.0)
    for number in range(rounds):
        order = list(kinds) if number % 2 == 0 else list(reversed(kinds))
        for kind in order:
            before = cpu_of() if cpu_of else 0.0
            result = load.run("127.0.0.1", port, kinds[kind], clients=clients, seconds=seconds)
            cpu[kind] += (cpu_of() if cpu_of else 0.0) - before
            _check(result, 201, kind)
            merged[kind].latencies += result.latencies
            merged[kind].statuses.update(result.statuses)
            merged[kind].seconds += result.seconds
    out = {}
    for kind, result in merged.items():
        out[kind] = result.summary()
        if cpu_of and result.latencies:
            out[kind]["web_cpu_ms_per_request"] = cpu[kind] * 1000 / len(result.latencies)
    out["ratio"] = out["submit"]["per_second"] / out["plain"]["per_second"]
    out["clients"] = clients
    return out


# --- 2. end to end ------------------------------------------------------------------------------


def end_to_end(port: int, token: str, *, count: int, clients: int, pipeline: str,
               timeout: float) -> dict:
    """``count`` no-op processes through the API, until every one SUCCEEDED."""
    from apps.processes.models import Process
    from workers.contract import TERMINAL_STATES, State

    make = _builder(port, token, "POST", PROCESSES,
                    lambda n: {"pipeline": pipeline, "used_config": {"name": f"e{n}"}})
    started = time.time()
    result = load.run("127.0.0.1", port, make, clients=clients, count=count, keep_bodies=True)
    _check(result, 201, "end-to-end submit")
    submitted = time.time() - started
    ids = [json.loads(body)["id"] for body in result.bodies]
    rows = Process.objects.filter(pk__in=ids)
    deadline = time.monotonic() + timeout
    while True:
        ended = rows.filter(state__in=TERMINAL_STATES).count()
        if ended == count:
            break
        if time.monotonic() > deadline:
            states = Counter(rows.values_list("state", flat=True))
            raise RuntimeError(f"end to end: {ended} of {count} ended within {timeout} s {states}")
        time.sleep(0.1)
    failed = rows.exclude(state=State.SUCCEEDED).count()
    if failed:
        raise RuntimeError(f"end to end: {failed} of {count} did not succeed")
    last = max(rows.values_list("finished_at", flat=True))
    seconds = last.timestamp() - started
    return {"processes": count, "seconds": seconds, "per_second": count / seconds,
            "submit_seconds": submitted}


# --- 3. start latency ---------------------------------------------------------------------------


def start_latency(port: int, token: str, *, pipeline: str, samples: int, timeout: float,
                  stop: bool = False) -> dict:
    """Submit one process at a time on an idle pool; submit to RUNNING, from the POST being
    sent to the ``started_at`` the control plane recorded (when the target says the job
    started), and to the moment RUNNING was recorded (when a client can see it), also counted
    from the target's own start. With ``stop``, each job (one that would run on) is stopped
    through the API and waited for before the next is sent."""
    from apps.processes.models import Process, ProcessEvent
    from workers.contract import State, is_terminal

    api = Api(port, token)
    latencies, posts, seen, after_start = [], [], [], []
    try:
        for _ in range(samples):
            sent = time.time()
            status, body = api.call("POST", PROCESSES, {"pipeline": pipeline})
            posts.append(time.time() - sent)
            if status != 201:
                raise RuntimeError(f"start latency: POST answered {status} {body}")
            deadline = time.monotonic() + timeout
            while True:
                state, started_at = Process.objects.filter(pk=body["id"]).values_list(
                    "state", "started_at").get()
                if started_at is not None:
                    break
                if is_terminal(state) or time.monotonic() > deadline:
                    raise RuntimeError(f"start latency: {pipeline} {body['id']} is {state}, "
                                       "never RUNNING")
                time.sleep(0.005)
            latencies.append(started_at.timestamp() - sent)
            recorded = ProcessEvent.objects.filter(
                process_id=body["id"], to_state=State.RUNNING).values_list(
                "recorded_at", flat=True).first() or started_at
            seen.append(recorded.timestamp() - sent)
            after_start.append(recorded.timestamp() - started_at.timestamp())
            if stop:
                _stop_and_wait(api, body["id"], timeout)
            # not in step with the poll loop
            time.sleep(random.uniform(0.05, 0.15))  # noqa: S311 - jitter, not a secret
    finally:
        api.close()
    ordered = sorted(latencies)
    return {"pipeline": pipeline, "samples": samples,
            "p50_ms": load.percentile(ordered, 50) * 1000,
            "p99_ms": load.percentile(ordered, 99) * 1000,
            "max_ms": ordered[-1] * 1000,
            "post_p50_ms": load.percentile(sorted(posts), 50) * 1000,
            "seen_p50_ms": load.percentile(sorted(seen), 50) * 1000,
            "seen_p99_ms": load.percentile(sorted(seen), 99) * 1000,
            "after_start_p50_ms": load.percentile(sorted(after_start), 50) * 1000,
            "after_start_p99_ms": load.percentile(sorted(after_start), 99) * 1000}


def _stop_and_wait(api: Api, pid: str, timeout: float) -> None:
    from apps.processes.models import Process
    from workers.contract import is_terminal

    status, body = api.call("POST", f"{PROCESSES}{pid}/stop/")
    if status != 200:
        raise RuntimeError(f"stop of {pid} answered {status} {body}")
    deadline = time.monotonic() + timeout
    while not is_terminal(Process.objects.values_list("state", flat=True).get(pk=pid)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{pid} did not stop within {timeout} s")
        time.sleep(0.05)


# --- 4. reads at scale --------------------------------------------------------------------------


def _timed(api: Api, paths: list[str]) -> dict:
    latencies = []
    for path in paths:
        started = time.perf_counter()
        status, _ = api.call("GET", path)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
    ordered = sorted(latencies)
    return {"requests": len(paths), "p50_ms": load.percentile(ordered, 50) * 1000,
            "p99_ms": load.percentile(ordered, 99) * 1000}


def scale_reads(port: int, token: str, application: str, *, reads: int) -> dict:
    """Status, detail and list reads of one client that owns every generated process."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.id FROM processes_process p TABLESAMPLE SYSTEM (5) "
            "JOIN oauth2_provider_application a ON a.id = p.application_id "
            "WHERE a.name = %s LIMIT %s", [application, reads * 4])
        ids = [str(row[0]) for row in cursor.fetchall()]
    if len(ids) < reads:
        raise RuntimeError(f"scale reads: only {len(ids)} sampled processes")
    random.shuffle(ids)
    lists = max(reads // 5, 5)
    api = Api(port, token)
    try:
        _timed(api, [f"{PROCESSES}{pid}/status/" for pid in ids[-20:]])  # warm up
        return {
            "status": _timed(api, [f"{PROCESSES}{pid}/status/" for pid in ids[:reads]]),
            "detail": _timed(api, [f"{PROCESSES}{pid}/" for pid in ids[reads:2 * reads]]),
            "list": _timed(api, [PROCESSES] * lists),
            "list_page_100": _timed(api, [f"{PROCESSES}?page=100"] * lists),
            "list_failed": _timed(api, [f"{PROCESSES}?state=FAILED"] * lists),
        }
    finally:
        api.close()
