"""Drill 8: restart the container engine while containers run.

The engine is Podman's Docker API service. The drill starts its own service on a socket of its
own (the machine's service, which other tests use, is never touched); containers live on under
Podman's ``conmon`` while the service is down, as they do under a Docker daemon with
live-restore. While the engine is away, polls fail and decide nothing, and submissions of runs
posted meanwhile are retried; once it is back, every process ends as its container did, each
with exactly one container, and no container of the drill's pool is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.drills.harness import Backend, Expect, sh_job, write_pipeline
from tests.drills.infra import wait_for
from workers.contract import State

pytestmark = [pytest.mark.drill, pytest.mark.e2e]

IMAGE = "orchestration/busybox:latest"
LABEL_POOL = "orchestration.pool"
LABEL_PROCESS = "orchestration.process"
DOWN_S = 4


class PrivateEngine:
    """``podman system service`` on a socket of its own, started and stopped by its pid."""

    def __init__(self, base: Path):
        self.socket = base / "podman.sock"
        self.log = base / "podman-service.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if shutil.which("podman") is None:
            raise RuntimeError("drill 8 needs Podman: run deploy/container-engine.sh (as root)")
        self.socket.unlink(missing_ok=True)
        out = open(self.log, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
        wait_for(self.answers, 30, "the private Podman service")

    def answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(str(self.socket))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
                return b" 200 " in sock.recv(200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class DockerBackend(Backend):
    """Containers through the private engine, in a pool of the drill's own. A job is counted
    by the engine's own record: its ``create`` events for the process's label."""

    target = "docker"
    pipeline = "drill-container"

    def __init__(self, run_dir: Path, engine: PrivateEngine):
        self.pool = f"docker-drill-{os.getpid()}"
        self.run_dir, self.engine = run_dir, engine
        self.since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._events: list[dict] | None = None

    def write_pipelines(self, directory: Path) -> None:
        (directory / "pools").mkdir(parents=True, exist_ok=True)
        pool = {"name": self.pool, "target": "docker", "capacity": 16, "queued_limit": "1m",
                "settings": {"pull": "never", "network": "none", "stop_grace_s": 2,
                             "work_root": str(self.run_dir / "work")}}
        (directory / "pools" / f"{self.pool}.yaml").write_text(json.dumps(pool))
        write_pipeline(directory, self.pipeline, target="docker", pool=self.pool, cpus=0.5,
                       description="Prints its start, sleeps, exits with the given code.",
                       run={"image": IMAGE,
                            "command": ["sh", "-c", sh_job('echo "start $ORCH_PROCESS_ID $$"\n')]})

    def worker_env(self) -> dict[str, str]:
        return {"DOCKER_HOST": f"unix://{self.engine.socket}"}

    def _podman(self, *args: str) -> str:
        done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"podman {args[0]} failed: {done.stderr}")
        return done.stdout

    def creations(self) -> list[dict]:
        out = self._podman("events", "--stream=false", "--since", self.since,
                           "--filter", "type=container", "--filter", "event=create",
                           "--format", "json")
        return [e for e in map(json.loads, out.splitlines())
                if (e.get("Attributes") or {}).get(LABEL_POOL) == self.pool]

    def jobs(self, process_id: str) -> int:
        return len({e["ID"] for e in self.creations()
                    if e["Attributes"].get(LABEL_PROCESS) == process_id})

    def containers(self) -> list[str]:
        return self._podman("ps", "-a", "--filter", f"label={LABEL_POOL}={self.pool}",
                            "--format", "{{.ID}} {{.Names}} {{.Status}}").splitlines()

    def orphans(self) -> list[str]:
        return self.containers()

    def cleanup(self) -> None:
        ids = self._podman("ps", "-aq", "--filter", f"label={LABEL_POOL}={self.pool}").split()
        if ids:
            self._podman("rm", "-f", "-t", "0", *ids)
        self.engine.stop()


@pytest.fixture
def engine(tmp_path):
    engine = PrivateEngine(tmp_path)
    engine.start()
    yield engine
    engine.stop()


def test_container_engine_restarted(engine, drill_for, tmp_path, record):
    drill = drill_for(DockerBackend(tmp_path, engine))
    drill.start()
    running = drill.submit(10, seconds=6)
    failing = drill.submit(2, seconds=6, exit_code=3)
    drill.wait_states(running + failing, {State.RUNNING})

    stopping = time.monotonic()
    engine.stop()
    during = drill.submit(3, seconds=1)  # their submissions fail until the engine is back
    time.sleep(DOWN_S)
    states = drill.states(running + failing)
    assert set(states.values()) == {State.RUNNING}, "a failed poll must decide nothing"
    engine.start()
    back_after = time.monotonic() - stopping

    expected = {pid: Expect(State.SUCCEEDED, 0) for pid in running + during}
    expected.update({pid: Expect(State.FAILED, 3) for pid in failing})
    summary = drill.check(expected)
    summary["fault"] = f"engine down {back_after:.1f} s"
    record(summary)
