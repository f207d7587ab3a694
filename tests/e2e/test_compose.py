"""docker-compose.yml runs: `podman-compose up -d` of the project's compose file (Podman's
compose support; no Docker engine here) brings up PostgreSQL, RabbitMQ, the web server, the
control consumer, the beat and a local worker, each healthy by its own health check; a client
made with `exec web python manage.py create_client` then goes through the README's curl flow
(token, POST hello, status until SUCCEEDED, logs), uploads a dataset that a job on the worker
reads (the shared storage volume) and downloads the output it wrote; `down -v` removes it all.

The images come from deploy/compose-images.sh (ORCH_IMAGE, ORCH_POSTGRES_IMAGE,
ORCH_RABBITMQ_IMAGE: no registry is reachable here); deploy/test.sh builds them once. Each run
is a project of its own name on a free port, and everything it started is removed, whatever
happened."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("ORCH_IMAGE", "ORCH_POSTGRES_IMAGE", "ORCH_RABBITMQ_IMAGE")
# Every long-running part, with its health check; and the one-shot services that must succeed.
PARTS = ("postgres", "rabbitmq", "web", "control", "beat", "worker-local")
ONE_SHOTS = ("broker-users", "keys")
HEALTHY_WITHIN_S = 420


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(argv: list[str], env: dict | None = None, timeout: float = 120,
        check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:6])}... exited {done.returncode}:\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """The compose images this machine built, else a skip saying how to build them."""
    how = 'build them: eval "$(deploy/compose-images.sh)" (deploy/test.sh does)'
    if not shutil.which("podman-compose"):
        pytest.skip(f"podman-compose is not installed: {how}")
    found = {name: os.environ.get(name, "") for name in IMAGES}
    missing = [name for name, image in found.items()
               if not image or run(["podman", "image", "exists", image], check=False).returncode]
    if missing:
        pytest.skip(f"no image in {', '.join(missing)}: {how}")
    return found


class Project:
    """One compose project: its name, its port, and podman-compose on it."""

    def __init__(self, images: dict[str, str]):
        self.name = f"orchtest{os.getpid()}x{secrets.token_hex(3)}"
        self.port = free_port()
        # Only what compose needs: none of this process's settings reaches the containers.
        self.env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
                    "ORCH_PORT": str(self.port), **images}
        self.url = f"http://127.0.0.1:{self.port}"

    def compose(self, *args: str, timeout: float = 300, check: bool = True):
        return run(["podman-compose", "-p", self.name, "-f", str(ROOT / "docker-compose.yml"),
                    *args], env=self.env, timeout=timeout, check=check)

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"  # podman-compose 1.0's naming

    def state(self, service: str) -> dict:
        done = run(["podman", "inspect", "--format", "{{json .State}}",
                    self.container(service)], check=False)
        return json.loads(done.stdout) if done.returncode == 0 else {}

    def logs(self) -> str:
        out = []
        for service in ONE_SHOTS + PARTS:
            done = run(["podman", "logs", "--tail", "30", self.container(service)], check=False)
            out.append(f"--- {service}\n{done.stdout[-2500:]}{done.stderr[-2500:]}")
        return "\n".join(out)

    def remove_everything(self) -> None:
        """down -v, then whatever is left with the project's label: containers, volumes,
        networks (podman-compose 1.0 leaves its network behind)."""
        self.compose("down", "-v", check=False)
        label = f"label=io.podman.compose.project={self.name}"
        for kind, listing in (("container", ["ps", "-aq"]), ("volume", ["volume", "ls", "-q"]),
                              ("network", ["network", "ls", "-q"])):
            left = run(["podman", *listing, "--filter", label], check=False).stdout.split()
            if left:
                run(["podman", kind, "rm", "-f", *left], check=False)


@pytest.fixture
def project(images):
    project = Project(images)
    try:
        project.compose("up", "-d")
        yield project
    finally:
        project.remove_everything()


def wait_until_healthy(project: Project) -> None:
    """Every part's health check passes and both one-shot services ended with 0. Podman runs
    the checks from a systemd timer, and there is none here: so each is run from this loop
    (`podman healthcheck run`, the compose file's own test)."""
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    pending = set(PARTS)
    while True:
        for service in ONE_SHOTS:
            state = project.state(service)
            if state.get("Status") == "exited" and state.get("ExitCode") != 0:
                raise AssertionError(f"{service} failed:\n{project.logs()}")
        for service in sorted(pending):
            check = run(["podman", "healthcheck", "run", project.container(service)],
                        check=False, timeout=60)
            if check.returncode == 0:
                pending.discard(service)
        done = all(project.state(s).get("Status") == "exited" for s in ONE_SHOTS)
        if not pending and done:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not healthy after {HEALTHY_WITHIN_S} s: "
                                 f"{sorted(pending)}\n{project.logs()}")
        time.sleep(3)


def curl(*args: str) -> str:
    return run(["curl", "-sS", "--fail-with-body", "--max-time", "30", *args]).stdout


def wait_for_state(url: str, bearer: tuple[str, str], process_id: str,
                   until: str = "finished", within_s: float = 180) -> dict:
    """The process's status once ``until`` ("finished", or a state) holds, or at the end."""
    deadline = time.monotonic() + within_s
    while True:
        status = json.loads(curl(*bearer, f"{url}/api/processes/{process_id}/status/"))
        if status["finished"] or status["state"] == until or time.monotonic() > deadline:
            return status
        time.sleep(1)


# The uids of the worker container's processes that run `python3 -c CODE` with the text
# given in CODE: the sleep pipeline's job itself (its runner, root, is another process).
UIDS_OF = """import pathlib, sys
for proc in pathlib.Path("/proc").glob("[0-9]*"):
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\\0")
        if argv[:2] == [b"python3", b"-c"] and sys.argv[1].encode() in argv[2]:
            print(proc.stat().st_uid, argv[0].decode())
    except (OSError, IndexError):
        pass
"""


def job_uids(project: Project, process_id: str, bearer: tuple[str, str]) -> set[int]:
    """The uids the process's job runs as, in the worker's container, once it is RUNNING."""
    url = project.url
    assert wait_for_state(url, bearer, process_id, until="RUNNING")["state"] == "RUNNING"
    found = run(["podman", "exec", project.container("worker-local"), "python", "-c",
                 UIDS_OF, "slept"]).stdout
    return {int(line.split()[0]) for line in found.splitlines()}


def test_compose_up_runs_the_readme_flow(project, tmp_path):
    started = time.monotonic()
    wait_until_healthy(project)
    print(f"compose: every part healthy {time.monotonic() - started:.0f} s after up -d")
    # `exec web` (podman exec: podman-compose 1.0's own exec passes each unset variable the
    # compose file names as the text "None")
    made = run(["podman", "exec", project.container("web"), "python", "manage.py",
                "create_client", "compose-robot", "--format", "env"])
    login = dict(re.findall(r"^(?:export )?(ORCH_CLIENT_ID|ORCH_CLIENT_SECRET)=(\S+)$",
                            made.stdout, re.M))
    assert set(login) == {"ORCH_CLIENT_ID", "ORCH_CLIENT_SECRET"}, made.stdout

    # The README's curl flow, against the compose stack's published port.
    url = project.url
    token = json.loads(curl("-u", f"{login['ORCH_CLIENT_ID']}:{login['ORCH_CLIENT_SECRET']}",
                            "-d", "grant_type=client_credentials", f"{url}/o/token/")
                       )["access_token"]
    bearer = ("-H", f"Authorization: Bearer {token}")
    created = json.loads(curl(*bearer, "-H", "Content-Type: application/json",
                              "-H", "Idempotency-Key: compose-42", f"{url}/api/processes/",
                              "-d", '{"pipeline": "hello", "used_config": {"name": "Ada"}}'))
    status = wait_for_state(url, bearer, created["id"])
    assert status["state"] == "SUCCEEDED", (status, project.logs())
    logs = json.loads(curl(*bearer, f"{url}/api/processes/{created['id']}/logs/?offset=0"))
    assert "Hello, Ada!" in logs["text"], logs

    # Data in, results out: a dataset uploaded to web is staged into a job on the worker
    # (their shared storage volume), and the output the job wrote downloads from web.
    text = tmp_path / "poem.txt"
    text.write_text("the cat sat on the mat\nthe end\n")
    dataset = json.loads(curl(*bearer, "-F", f"file=@{text}", f"{url}/api/datasets/"))
    body = {"pipeline": "checksum", "used_config": {"input": dataset["id"]}}
    counted = json.loads(curl(*bearer, "-H", "Content-Type: application/json",
                              f"{url}/api/processes/", "-d", json.dumps(body)))
    status = wait_for_state(url, bearer, counted["id"])
    assert status["state"] == "SUCCEEDED", (status, project.logs())
    output = f"{url}/api/processes/{counted['id']}/outputs/result.json"
    result = json.loads(curl(*bearer, output))
    assert result["sha256"] == dataset["sha256"], result
    assert result["words"] == 8, result
    assert result["top_words"][0] == ["the", 3], result

    # A job runs as a uid of its own, never root, and stops when asked.
    sleeper = json.loads(curl(*bearer, f"{url}/api/processes/",
                              "-d", 'pipeline=sleep&used_config={"seconds": 120}'))
    uids = job_uids(project, sleeper["id"], bearer)
    assert uids, "the job's process was not found"
    assert 0 not in uids, uids
    curl(*bearer, "-X", "POST", f"{url}/api/processes/{sleeper['id']}/stop/")
    assert wait_for_state(url, bearer, sleeper["id"])["state"] == "STOPPED"

    # Each part as its own broker role, and no guest: the users deploy/broker-users.sh makes.
    users = run(["podman", "exec", project.container("rabbitmq"), "rabbitmqctl", "-q",
                 "list_users"]).stdout
    names = {line.split()[0] for line in users.splitlines() if line.strip()}
    assert {"orchestration.control", "orchestration.pool.local"} <= names, users
    assert "guest" not in names, users
    # The worker holds its own keys, never a master key nor the control plane's login.
    worker_env = run(["podman", "exec", project.container("worker-local"), "cat",
                      "/etc/orchestration/worker.env"]).stdout
    assert "orchestration.pool.local:" in worker_env
    assert "orchestration.control" not in worker_env
    listing = run(["podman", "exec", project.container("worker-local"), "ls", "-A",
                   "/app/var/keys"]).stdout
    assert listing.split() == [], listing
