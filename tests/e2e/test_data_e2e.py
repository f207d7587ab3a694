"""Data in, results out, end to end, as a client does it over HTTP (``requests``) against a
real web server (gunicorn), the control consumer and beat, RabbitMQ and a worker of each
target: upload a file as a multipart form, run ``checksum`` on it, wait for SUCCEEDED, list the
outputs, download ``result.json`` and find the upload's SHA-256 in it; then keep that output as
a dataset and run on it. On the local target, Docker (Podman) and Slurm; on Slurm once more
with a pool whose workers reach the data only through the control plane's signed URLs
(``data_access: url``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from io import StringIO

import pytest
import requests
import yaml
from django.core.management import call_command

from apps.pipelines.services import pipelines_load
from testbed import parts
from tests.e2e import stack
from tests.e2e.client import wait_for_end
from workers.contract import State

pytest_plugins = ["tests.e2e.docker_fixtures", "tests.e2e.slurm_fixtures"]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def _checksum_on(name: str, target: str, pool: str) -> str:
    """The shipped checksum pipeline, as ``name`` on another target: the same code."""
    shipped = yaml.safe_load((stack.ROOT / "pipelines" / "checksum.yaml").read_text())
    script = shipped["run"]["script"]
    if target == "docker":  # the image's python reads the same program
        code = script[script.index("<<'PY'\n") + 7:script.rindex("PY")]
        run = {"image": "orchestration/python:latest", "command": ["python3", "-c", code]}
    else:
        run = {"script": script}
    return yaml.safe_dump({**shipped, "name": name, "version": "1", "target": target,
                           "pool": pool, "run": run}, sort_keys=False)


TEST_PIPELINES = {
    "e2e-checksum-docker": _checksum_on("e2e-checksum-docker", "docker", "docker-main"),
    "e2e-checksum-slurm": _checksum_on("e2e-checksum-slurm", "slurm", "slurm-main"),
}


@pytest.fixture(scope="module")
def pipelines_dir(tmp_path_factory):
    return stack.pipelines_with(tmp_path_factory.mktemp("pipelines"), TEST_PIPELINES)


@pytest.fixture(scope="module")
def url_pipelines_dir(tmp_path_factory):
    """The same, with the slurm-main pool's workers told to reach data by signed URL only."""
    folder = stack.pipelines_with(tmp_path_factory.mktemp("url-pipelines"), TEST_PIPELINES)
    pool = folder / "pools" / "slurm-main.yaml"
    pool.write_text(pool.read_text().replace("settings:", "settings:\n  data_access: url", 1))
    return folder


@pytest.fixture(scope="module")
def web(stack_env, control_plane):
    """The web server as deploy/stack.sh runs it, on the stack's public port: the signed URLs
    the control plane puts in job specs point at it."""
    env, run_dir = stack_env
    url = env["ORCH_PUBLIC_URL"]  # the stack's, known to the relay that signs the URLs
    port = int(url.rsplit(":", 1)[1])
    access_log = run_dir / f"data-e2e-access-{port}.log"
    server = parts.web(stack.as_role({**env, "ORCH_PUBLIC_URL": url}, "control"), run_dir,
                       port, name=f"web-{port}", workers=1, access_log=access_log).start()
    stack.wait_until(lambda: _healthy(url) or not server.alive(), timeout=90,
                     what="the web server to answer /api/health/")
    assert server.alive(), server.output()[-3000:]
    yield url, access_log
    server.stop()


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/api/health/", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def client(web, control_plane, pipelines_dir):
    """A requests session with a bearer token of a new client, as the README gets one."""
    control_plane[0].wait_ready(60)  # it loads the shipped pipelines as it starts
    report = pipelines_load(pipelines_dir)
    assert not report.errors, report.errors
    out = StringIO()
    call_command("create_client", f"data-e2e-{os.urandom(3).hex()}", "--format", "json",
                 stdout=out)
    made = json.loads(out.getvalue())
    base, access_log = web
    answer = requests.post(f"{base}/o/token/", data={"grant_type": "client_credentials"},
                           auth=(made["client_id"], made["client_secret"]), timeout=30)
    assert answer.status_code == 200, answer.text
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    session.base = base  # type: ignore[attr-defined]
    session.access_log = access_log  # type: ignore[attr-defined]
    return session


def round_trip(client, pipeline: str) -> dict:
    """Upload, run ``pipeline`` on it, download its result.json: the result, checked."""
    base = client.base
    data = b"".join(b"to be or not to be, line %d\n" % n for n in range(2000)) + os.urandom(64)
    upload = client.post(f"{base}/api/datasets/", files={"file": ("lines.txt", data)},
                         timeout=60)
    assert upload.status_code == 201, upload.text
    dataset = upload.json()
    assert dataset["sha256"] == hashlib.sha256(data).hexdigest()

    run = client.post(f"{base}/api/processes/", timeout=60, json={
        "pipeline": pipeline, "used_config": {"input": dataset["id"], "top": 2}})
    assert run.status_code == 201, run.text
    pid = run.json()["id"]
    process = wait_for_end(pid, timeout=180)
    assert process.state == State.SUCCEEDED, process.message
    detail = client.get(f"{base}/api/processes/{pid}/", timeout=30).json()
    assert detail["used_config"]["input"] == dataset["id"]
    assert [d["id"] for d in detail["datasets"]] == [dataset["id"]]

    outputs = client.get(f"{base}/api/processes/{pid}/outputs/", timeout=30).json()
    assert [o["path"] for o in outputs] == ["result.json"], outputs
    download = client.get(f"{base}/api/processes/{pid}/outputs/result.json", timeout=60)
    assert download.status_code == 200
    assert 'filename="result.json"' in download.headers["Content-Disposition"]
    assert hashlib.sha256(download.content).hexdigest() == outputs[0]["sha256"]
    result = json.loads(download.content)
    assert result["sha256"] == dataset["sha256"]
    assert result["size"] == len(data)
    assert result["top_words"][:2] == [["to", 4000], ["be", 4000]]

    # One run feeds the next: the output as a dataset, read by another run.
    kept = client.post(f"{base}/api/datasets/", timeout=60,
                       json={"from_output": {"process": pid, "path": "result.json"}})
    assert kept.status_code == 201, kept.text
    assert kept.json()["sha256"] == outputs[0]["sha256"]
    return {"pid": pid, "dataset": dataset, "result": result, "kept": kept.json()}


def test_checksum_on_the_local_target(client, local_worker):
    round_trip(client, "checksum")


def test_checksum_in_a_container(client, docker_worker):
    round_trip(client, "e2e-checksum-docker")


def test_checksum_as_a_slurm_job(client, slurm_worker):
    round_trip(client, "e2e-checksum-slurm")


def test_checksum_on_slurm_through_signed_urls(client, slurm_worker, url_pipelines_dir,
                                               pipelines_dir, web):
    """With ``data_access: url`` in its pool's settings, the job spec carries signed URLs:
    the worker GETs the input and PUTs the outputs on the control plane."""
    report = pipelines_load(url_pipelines_dir)
    assert not report.errors, report.errors
    try:
        done = round_trip(client, "e2e-checksum-slurm")
    finally:
        pipelines_load(pipelines_dir)
    pid, dataset = done["pid"], done["dataset"]
    served = client.access_log.read_text()
    # The worker read the input and wrote the output through the signed URLs, no token.
    fetched = [line for line in served.splitlines() if '"GET /data/inputs/' in line]
    stored = [line for line in served.splitlines()
              if '"PUT /data/outputs/' in line and "/result.json " in line]
    assert fetched, served[-3000:]
    assert all('" 200 ' in line for line in fetched), fetched
    assert stored, served[-3000:]
    assert all('" 201 ' in line for line in stored), stored
    assert done["result"]["sha256"] == dataset["sha256"], pid


def readme_block() -> str:
    section = (stack.ROOT / "README.md").read_text().split("### Data in, results out", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)


def test_the_readme_walk_through_runs_as_written(client, local_worker, tmp_path):
    """Upload with curl, run checksum on it, download result.json: the digests agree."""
    env = {**os.environ, "URL": client.base,
           "TOKEN": client.headers["Authorization"].removeprefix("Bearer ")}
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", readme_block()], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    uploaded = (tmp_path / "hamlet.txt").read_bytes()
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["sha256"] == hashlib.sha256(uploaded).hexdigest()
    assert result["top_words"][0] == ["to", 2]
    lines = done.stdout.splitlines()
    assert f"{result['sha256']}  hamlet.txt" in lines
    kept = json.loads(lines[-1])
    assert kept["name"] == "result.json"
    assert kept["sha256"] == hashlib.sha256((tmp_path / "result.json").read_bytes()).hexdigest()
