"""Fixtures of the docker target's end-to-end tests: the real container engine at DOCKER_HOST,
a worker of the ``docker-main`` pool (a subprocess the tests own), test pipelines loaded next
to the shipped ones, and a check after every test that no container of its processes is left.

The engine is the one ``deploy/container-engine.sh`` starts (Podman serving the Docker API);
without one every test fails with a message that says how to start it."""

from __future__ import annotations

import subprocess
from contextlib import closing
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException

from apps.processes.models import Process
from tests.e2e import stack
from tests.e2e.client import post_process
from tests.e2e.stack import wait_until
from tests.executors.docker_engine import BUSYBOX, force_remove, usable_engine
from workers.contract import is_terminal
from workers.executors.docker.container_spec import LABEL_PROCESS

POOL = "docker-main"
MISSING_IMAGE = "orchestration/e2e-no-such-image:latest"  # on no engine
ENGINE_SCRIPT = stack.ROOT / "deploy" / "container-engine.sh"

# Pipelines only these tests run, loaded next to the shipped ones. Their config is read from
# the config file inside the container, as data: it never reaches a command line.
_READ = "sed -n 's/.*\"{key}\": *\\([0-9][0-9]*\\).*/\\1/p' \"$ORCH_CONFIG_FILE\""
TEST_PIPELINES = {
    "e2e-sleep-docker": f"""
name: e2e-sleep-docker
version: "1"
description: >
  Prints a line a second for the given number of seconds, then leaves the file done in its
  work dir (docker e2e tests).
target: docker
pool: {POOL}
run:
  image: {BUSYBOX}
  command:
    - sh
    - -c
    - |
      seconds=$({_READ.format(key="seconds")})
      echo "started $ORCH_PROCESS_ID for $seconds s"
      i=0
      while [ "$i" -lt "$seconds" ]; do echo "tick $i"; sleep 1; i=$((i + 1)); done
      echo done
      touch "$ORCH_WORK_DIR/done"
resources: {{cpus: 0.5, memory: 32M, time_limit: 10m}}
config_schema:
  type: object
  properties: {{seconds: {{type: integer, minimum: 0, maximum: 600}}}}
  required: [seconds]
  additionalProperties: false
defaults: {{seconds: 5}}
""",
    "e2e-exit-docker": f"""
name: e2e-exit-docker
version: "1"
description: Exits with the code from its config (docker e2e tests).
target: docker
pool: {POOL}
run:
  image: {BUSYBOX}
  command:
    - sh
    - -c
    - |
      code=$({_READ.format(key="exit_code")})
      echo "exiting with $code"
      exit "$code"
resources: {{cpus: 0.5, memory: 32M, time_limit: 1m}}
config_schema:
  type: object
  properties: {{exit_code: {{type: integer, minimum: 0, maximum: 255}}}}
  required: [exit_code]
  additionalProperties: false
defaults: {{exit_code: 3}}
""",
    "e2e-missing-image-docker": f"""
name: e2e-missing-image-docker
version: "1"
description: Names an image no engine has (docker e2e tests).
target: docker
pool: {POOL}
run:
  image: {MISSING_IMAGE}
  command: ["true"]
resources: {{cpus: 0.5, memory: 32M, time_limit: 1m}}
""",
}


class Engine:
    """The container engine at DOCKER_HOST, as the tests look at it. Each call makes a fresh
    client, so it works across a restart of the engine."""

    @staticmethod
    def client() -> docker.DockerClient:
        return docker.from_env(timeout=10)

    def answers(self) -> bool:
        try:
            with closing(self.client()) as client:
                return client.ping()
        except (DockerException, OSError):
            return False

    def containers_of(self, process_id: str) -> list[dict]:
        """Every container, running or not, that carries the process's label."""
        with closing(self.client()) as client:
            return client.api.containers(
                all=True, filters={"label": [f"{LABEL_PROCESS}={process_id}"]})

    def has_image(self, name: str) -> bool:
        with closing(self.client()) as client:
            return any(name in image.tags for image in client.images.list())

    def remove_containers_of(self, process_id: str) -> None:
        with closing(self.client()) as client:
            for found in client.api.containers(
                all=True, filters={"label": [f"{LABEL_PROCESS}={process_id}"]}
            ):
                force_remove(client.api, found["Id"])

    def script(self, action: str) -> None:
        """``deploy/container-engine.sh start|stop``: stop stops only a service it started."""
        done = subprocess.run([str(ENGINE_SCRIPT), action], cwd=stack.ROOT, capture_output=True,
                              text=True, timeout=600, check=False)
        assert done.returncode == 0, f"container-engine.sh {action} failed:\n{done.stderr}"


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The engine the worker will use, with the example images; else a skipped test that says
    how to start it (a failure in CI)."""
    engine = Engine()
    usable_engine(engine.client).close()
    return engine


@pytest.fixture(scope="package")
def docker_worker(stack_env, control_plane, engine):
    """A worker of the docker-main pool."""
    worker = stack.pool_worker(stack_env, control_plane, POOL)
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def docker_pipelines_dir(tmp_path_factory) -> Path:
    return stack.pipelines_with(tmp_path_factory.mktemp("pipelines"), TEST_PIPELINES)


@pytest.fixture
def docker_run(api, engine, docker_worker, docker_pipelines_dir):
    """docker_run(pipeline, config) -> process id, posted through the API.

    After the test, every process it started must be terminal with no container left that
    carries its label (the worker removes it on the poll that reports the end)."""
    from apps.pipelines.services import pipelines_load

    report = pipelines_load(docker_pipelines_dir)
    assert not report.errors, report.errors
    started: list[str] = []

    def post(pipeline: str, config: dict | None = None) -> str:
        started.append(post_process(api, pipeline, config))
        return started[-1]

    yield post

    left = {}
    for pid in started:
        if not is_terminal(Process.objects.get(pk=pid).state):
            api.post(f"/api/processes/{pid}/stop/")  # the test failed early: clean up only
            engine.remove_containers_of(pid)
            continue
        try:
            wait_until(lambda pid=pid: not engine.containers_of(pid), timeout=20,
                       what=f"the containers of {pid} to be removed")
        except AssertionError:
            left[pid] = [f"{c['Id'][:12]} {c.get('State')}" for c in engine.containers_of(pid)]
            engine.remove_containers_of(pid)
    assert not left, f"containers left after their process ended: {left}"
