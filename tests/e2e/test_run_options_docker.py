"""Per-run image, env, resources and GPU devices end to end on the docker target (issue 18):
POSTed through the API, admitted, run by a real worker of the docker-main pool in a real
container, which shows what it was given (its log; its env and limits as the engine reports
them while it runs). There is no GPU here: what is checked is which device ids the container
is told it holds.

After every test, no container of its processes is left (docker_run)."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from apps.pipelines.services import pipelines_load
from tests.e2e.client import PROCESSES, wait_for_end, wait_for_log
from tests.e2e.stack import pipelines_with, wait_until
from tests.executors.docker_engine import BUSYBOX, PYTHON
from workers.contract import State

pytest_plugins = ["tests.e2e.docker_fixtures"]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

# docker-main as shipped, counting two GPUs; and a pipeline that shows what it was given,
# then waits for the test to look at its container (the file "go" in its work dir).
GPU_POOL_LINES = 'gpus: ["0", "1"]\nmax_resources: {cpus: 4, memory: 4G, gpus: 1, time_limit: 6h}\n'
SHOW = f"""
name: e2e-show-docker
version: "1"
description: Shows its env, image and GPU devices, then waits for the file go (e2e tests).
target: docker
pool: docker-main
run:
  image: {BUSYBOX}
  command:
    - sh
    - -c
    - |
      echo "SEED=$SEED"
      echo "GPUS=$ORCH_GPU_DEVICES NVIDIA=$NVIDIA_VISIBLE_DEVICES"
      python3 -c "print('python of the image')" 2>/dev/null || echo "no python"
      echo waiting
      while [ ! -e "$ORCH_WORK_DIR/go" ]; do sleep 0.2; done
      echo done
resources: {{cpus: 0.5, memory: 32M, time_limit: 10m}}
allow: {{image: true, env: [SEED]}}
"""


@pytest.fixture
def gpu_docker_main(tmp_path, docker_pipelines_dir):
    """docker-main with two GPUs and e2e-show-docker loaded; as shipped again afterwards."""
    folder = pipelines_with(tmp_path / "pipelines", {"e2e-show-docker": SHOW})
    pool_file = folder / "pools" / "docker-main.yaml"
    pool_file.write_text(pool_file.read_text().replace("max_resources:", "# max_resources:")
                         + GPU_POOL_LINES)
    report = pipelines_load(folder)
    assert not report.errors, report.errors
    yield
    report = pipelines_load(docker_pipelines_dir)
    assert not report.errors, report.errors


def gone(engine, pid: str) -> None:
    """The process ended and the worker removed its container (as it does on the poll that
    reports the end)."""
    wait_until(lambda: not engine.containers_of(pid), timeout=20,
               what=f"the container of {pid} to be removed")


def test_a_run_gets_its_image_env_memory_and_one_gpu_device(
        api, docker_run, engine, gpu_docker_main, work_root):
    body = {"pipeline": "e2e-show-docker", "image": PYTHON, "env": {"SEED": "42"},
            "resources": {"gpus": 1, "memory": "96M"}}
    response = api.post(PROCESSES, body, format="json")
    assert response.status_code == 201, response.content
    pid = response.json()["id"]
    try:
        log = wait_for_log(api, pid, "waiting")
        assert "SEED=42" in log
        assert "GPUS=0 NVIDIA=0" in log
        assert "python of the image" in log

        [container] = engine.containers_of(pid)
        with closing(engine.client()) as client:
            seen = client.api.inspect_container(container["Id"])
        assert seen["Config"]["Image"].endswith(PYTHON)
        assert {"SEED=42", "NVIDIA_VISIBLE_DEVICES=0", "ORCH_GPU_DEVICES=0"} <= set(
            seen["Config"]["Env"])
        assert seen["HostConfig"]["Memory"] == 96 * 1024 * 1024
        shown = api.get(f"{PROCESSES}{pid}/").json()
        assert (shown["gpu_devices"], shown["image"], shown["env"]) == (["0"], PYTHON,
                                                                       {"SEED": "42"})
    finally:  # the job ends, whatever was seen
        (Path(work_root) / pid / "work" / "go").touch()
        process = wait_for_end(pid)
        gone(engine, pid)
    assert process.state == State.SUCCEEDED, process.message
    wait_for_log(api, pid, "done")


def test_the_readme_example_runs_hello_docker_in_another_image_with_env(api, docker_run,
                                                                           engine):
    """The README's example, on docker-main and hello-docker as shipped."""
    body = {"pipeline": "hello-docker", "image": PYTHON, "env": {"GREETING": "Bonjour"},
            "resources": {"cpus": 1, "memory": "256M", "time_limit": "5m"}}
    response = api.post(PROCESSES, body, format="json")
    assert response.status_code == 201, response.content
    pid = response.json()["id"]
    process = wait_for_end(pid)
    gone(engine, pid)
    assert process.state == State.SUCCEEDED, process.message
    log = wait_for_log(api, pid, '"name": "world"')
    assert "Bonjour from container" in log
    assert response.json()["resources"] == {"cpus": 1, "memory_mb": 256, "gpus": 0,
                                            "time_limit_s": 300}
