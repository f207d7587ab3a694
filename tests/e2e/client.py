"""What the end-to-end tests do as a client of the REST API (in the test process), and how they
wait for what the real processes report."""

from __future__ import annotations

from apps.processes.models import Process
from tests.e2e.stack import wait_until
from workers.contract import is_terminal

PROCESSES = "/api/processes/"


def post_process(api, pipeline: str, config: dict | None = None) -> str:
    """POST a run as JSON; its process id."""
    response = api.post(PROCESSES, {"pipeline": pipeline, "used_config": config or {}},
                        format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def state_of(pid: str) -> str:
    return Process.objects.get(pk=pid).state


def wait_for_state(pid: str, *states: str, timeout: float = 60) -> Process:
    wait_until(lambda: state_of(pid) in states, timeout, what=f"{pid} to reach {states}")
    return Process.objects.get(pk=pid)


def wait_for_end(pid: str, timeout: float = 60) -> Process:
    wait_until(lambda: is_terminal(state_of(pid)), timeout, what=f"{pid} to end")
    return Process.objects.get(pk=pid)


def path_of(api, pid: str) -> list[str]:
    """The states of the process's event history, in order."""
    return [e["to"] for e in api.get(f"{PROCESSES}{pid}/events/").json()]


def logs_of(api, pid: str) -> str:
    return api.get(f"{PROCESSES}{pid}/logs/").json()["text"]


def wait_for_log(api, pid: str, text: str, timeout: float = 30) -> str:
    return wait_until(lambda: text in (log := logs_of(api, pid)) and log, timeout,
                      what=f"{text!r} in the log of {pid}")
