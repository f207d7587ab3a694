"""Per-run resources, image and env (issue 18, "Pools keep their promises"): a POST may ask
resources within its pool's ``max_resources`` and, where its pipeline's ``allow`` and its
pool's ``images`` say so, an image and plain env values. Anything else is a 400 naming the
field that creates nothing; what is accepted is shown by the API, reaches the job spec and is
kept by a re-run. A malformed pool or pipeline file fails to load, named with its reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from django.conf import settings

from apps.pipelines.services import pipelines_load
from apps.processes import messaging
from apps.processes.models import Process
from apps.processes.run_options import ENV_MAX_NAMES, ENV_VALUE_MAX_BYTES
from workers.contract import Resources

pytestmark = pytest.mark.django_db

PROCESSES = "/api/processes/"

GPU_POOL = """
name: gpu-box
target: docker
capacity: 4
gpus: 2
max_resources: {cpus: 4, memory: 8G, gpus: 1, time_limit: 4h}
images: ["orchestration/*:*", "localhost/orch-*:*"]
settings: {}
"""

TRAIN = """
name: train
target: docker
pool: gpu-box
run:
  image: orchestration/python:latest
  command: [python3, -c, "print('training')"]
  env: {MODE: fast, EPOCHS: "10"}
resources: {cpus: 1, memory: 256M, time_limit: 10m}
secrets: [API_TOKEN]
allow: {image: true, env: [SEED, EPOCHS]}
"""

FIXED = """
name: fixed
target: docker
pool: gpu-box
run:
  image: orchestration/busybox:latest
  command: ["true"]
"""

ANY_ENV = """
name: any-env
target: local
pool: local
run:
  command: ["true"]
resources: {cpus: 1, memory: 128M, time_limit: 1m}
secrets: [API_TOKEN]
allow: {env: true}
"""


def folder_with(root: Path, files: dict[str, str]) -> Path:
    """The shipped pipelines and pools, plus ``files`` (relative path -> text)."""
    folder = root / "pipelines"
    if not folder.exists():
        shutil.copytree(settings.PIPELINES_DIR, folder)
    for name, text in files.items():
        (folder / name).write_text(text.lstrip())
    return folder


@pytest.fixture
def loaded(tmp_path, pipelines):
    report = pipelines_load(folder_with(tmp_path, {
        "pools/gpu-box.yaml": GPU_POOL, "train.yaml": TRAIN, "fixed.yaml": FIXED,
        "any-env.yaml": ANY_ENV}))
    assert not report.errors, report.errors
    return report


def post(api, body: dict, **headers):
    return api.post(PROCESSES, body, format="json", **headers)


# --- accepted -----------------------------------------------------------------------------------


def test_resources_image_and_env_are_shown_reach_the_job_spec_and_a_rerun_keeps_them(
        api, loaded, specs, django_capture_on_commit_callbacks):
    body = {"pipeline": "train", "image": "localhost/orch-trainer:2.1",
            "resources": {"cpus": 2, "memory": "1G", "time_limit": "30m"},
            "env": {"SEED": "42", "EPOCHS": "3"}}
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, body)
    assert response.status_code == 201, response.content
    pid = response.json()["id"]

    shown = api.get(f"{PROCESSES}{pid}/").json()
    assert shown["resources"] == {"cpus": 2, "memory_mb": 1024, "gpus": 0,
                                  "time_limit_s": 1800}
    assert shown["image"] == "localhost/orch-trainer:2.1"
    assert shown["env"] == {"SEED": "42", "EPOCHS": "3"}  # plain values: not secret

    [spec] = specs
    assert spec.resources == Resources(cpus=2, memory_mb=1024, gpus=0, time_limit_s=1800)
    assert spec.image == "localhost/orch-trainer:2.1"
    # The run's own values over the pipeline's, which it keeps where the run says nothing.
    assert spec.env == {"MODE": "fast", "EPOCHS": "3", "SEED": "42"}
    assert messaging.poll_item(Process.objects.get(pk=pid)).time_limit_s == 1800

    with django_capture_on_commit_callbacks(execute=True):
        again = api.post(f"{PROCESSES}{pid}/rerun/")
    assert again.status_code == 201, again.content
    rerun = again.json()
    assert rerun["id"] != pid
    assert (rerun["resources"], rerun["image"], rerun["env"]) == (
        shown["resources"], shown["image"], shown["env"])
    assert specs[1].resources == spec.resources
    assert (specs[1].image, specs[1].env) == (spec.image, spec.env)


def test_a_run_that_asks_nothing_gets_its_pipelines_resources_and_image(api, loaded, specs,
                                                                        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, {"pipeline": "fixed"})
    assert response.status_code == 201, response.content
    shown = response.json()
    assert shown["resources"] == {"cpus": 1, "memory_mb": 512, "gpus": 0, "time_limit_s": 3600}
    assert shown["image"] == "orchestration/busybox:latest"
    assert shown["env"] == {}
    assert specs[0].image == "orchestration/busybox:latest"
    assert specs[0].env == {}


def test_a_run_may_ask_less_than_its_pipeline_where_the_pool_sets_no_maximum(api, loaded):
    response = post(api, {"pipeline": "hello", "resources": {"memory": 64, "time_limit": 30}})
    assert response.status_code == 201, response.content
    assert response.json()["resources"]["memory_mb"] == 64
    assert response.json()["resources"]["time_limit_s"] == 30


def test_form_encoded_resources_and_env_are_json_text(api, loaded):
    response = api.post(PROCESSES, {"pipeline": "train", "resources": json.dumps({"cpus": 3}),
                                    "env": json.dumps({"SEED": "7"})})
    assert response.status_code == 201, response.content
    assert response.json()["resources"]["cpus"] == 3
    assert response.json()["env"] == {"SEED": "7"}


def test_a_replayed_key_with_other_env_is_refused_naming_it(api, loaded):
    body = {"pipeline": "train", "env": {"SEED": "1"}}
    assert post(api, body, HTTP_IDEMPOTENCY_KEY="k1").status_code == 201
    assert post(api, body, HTTP_IDEMPOTENCY_KEY="k1").status_code == 201  # the same: replayed
    other = post(api, {**body, "env": {"SEED": "2"}}, HTTP_IDEMPOTENCY_KEY="k1")
    assert other.status_code == 422
    assert "another env" in other.json()["detail"]
    assert Process.objects.count() == 1


# --- refused ------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, field, words", [
    ({"pipeline": "train", "resources": {"gpus": 2}}, "resources",
     "resources.gpus: 2 is more than pool gpu-box allows (max_resources.gpus: 1)."),
    ({"pipeline": "train", "resources": {"cpus": 8}}, "resources",
     "resources.cpus: 8 is more than pool gpu-box allows (max_resources.cpus: 4)."),
    ({"pipeline": "train", "resources": {"memory": "16G"}}, "resources",
     "resources.memory: 16384 is more than pool gpu-box allows (max_resources.memory: 8192)."),
    ({"pipeline": "train", "resources": {"time_limit": "1d"}}, "resources",
     "resources.time_limit: 86400 is more than pool gpu-box allows"),
    ({"pipeline": "train", "resources": {"cpus": "lots"}}, "resources",
     "resources.cpus: must be a positive number"),
    ({"pipeline": "train", "resources": {"cpus": True}}, "resources",
     "resources.cpus: must be a positive number"),
    ({"pipeline": "train", "resources": {"gpus": 0.5}}, "resources",
     "resources.gpus: must be a whole number"),
    ({"pipeline": "train", "resources": {"memory": "a lot"}}, "resources",
     "resources.memory: cannot read 'a lot'"),
    ({"pipeline": "train", "resources": {"time_limit": "-5"}}, "resources",
     "resources.time_limit: cannot read '-5'"),
    ({"pipeline": "train", "resources": {"memory": "1" * 400}}, "resources",
     "resources.memory: cannot read"),  # a float of 400 digits is inf
    ({"pipeline": "train", "resources": {"time_limit": "9" * 5000}}, "resources",
     "resources.time_limit: cannot read"),  # past what int() reads
    ({"pipeline": "train", "resources": {"disk": "10G"}}, "resources",
     "resources.disk: unknown; a run may ask cpus, memory, gpus, time_limit."),
    ({"pipeline": "train", "resources": [1]}, "resources", "Must be a JSON object"),
    ({"pipeline": "hello", "resources": {"cpus": 2}}, "resources",
     "resources.cpus: 2 is more than pipeline hello asks (1), and pool local sets no "
     "max_resources.cpus."),
    ({"pipeline": "fixed", "image": "orchestration/python:latest"}, "image",
     "image: pipeline fixed does not let a run choose its image (allow.image in its file)."),
    ({"pipeline": "train", "image": "docker.io/evil/miner:latest"}, "image",
     "image: 'docker.io/evil/miner:latest' is not one of the images pool gpu-box allows "
     "(orchestration/*:*, localhost/orch-*:*)."),
    ({"pipeline": "train", "image": "orchestration/busybox"}, "image",
     "is not one of the images pool gpu-box allows"),
    ({"pipeline": "train", "image": "orchestration/x:1 --privileged"}, "image",
     "image: not an image reference"),
    ({"pipeline": "hello", "image": "orchestration/busybox:latest"}, "image",
     "image: pipeline hello runs on the local target, which runs no image."),
    ({"pipeline": "train", "image": 7}, "image", "Not a valid string."),
    ({"pipeline": "fixed", "env": {"SEED": "1"}}, "env",
     "env: pipeline fixed does not let a run set env values (allow.env in its file)."),
    ({"pipeline": "train", "env": {"MODE": "slow"}}, "env",
     "env.MODE: not allowed by pipeline train; it allows EPOCHS, SEED."),
    ({"pipeline": "any-env", "env": {"ORCH_CONFIG_FILE": "/etc/shadow"}}, "env",
     "env.ORCH_CONFIG_FILE: is reserved: ORCH_* names are set by orchestration."),
    ({"pipeline": "any-env", "env": {"API_TOKEN": "x"}}, "env",
     "env.API_TOKEN: is a secret of the pipeline: give it in secrets."),
    ({"pipeline": "any-env", "env": {"1BAD": "x"}}, "env",
     "env.1BAD: is not an environment variable name"),
    ({"pipeline": "any-env", "env": {"A-B": "x"}}, "env",
     "env.A-B: is not an environment variable name"),
    ({"pipeline": "train", "env": {"SEED": 42}}, "env", "env.SEED: must be a string, not int."),
    ({"pipeline": "train", "env": {"SEED": {"v": 1}}}, "env",
     "env.SEED: must be a string, not dict."),
    ({"pipeline": "train", "env": {"SEED": "4\u00002"}}, "env",
     "env.SEED: must not contain a NUL character."),
    ({"pipeline": "train", "env": {"SEED": "x" * (ENV_VALUE_MAX_BYTES + 1)}}, "env",
     f"env.SEED: longer than {ENV_VALUE_MAX_BYTES} bytes."),
    ({"pipeline": "any-env", "env": {f"V{n}": "x" for n in range(ENV_MAX_NAMES + 1)}}, "env",
     f"env: {ENV_MAX_NAMES + 1} values; the limit is {ENV_MAX_NAMES}."),
    ({"pipeline": "train", "env": "SEED=1"}, "env", "Not valid JSON"),
])
def test_what_the_pool_or_pipeline_does_not_allow_is_a_400_naming_it_and_creates_nothing(
        api, loaded, body, field, words):
    response = post(api, body)
    assert response.status_code == 400, response.content
    errors = response.json()["fields"]
    assert list(errors) == [field], errors
    assert words in " ".join(errors[field]), errors
    assert Process.objects.count() == 0


def test_a_number_past_any_float_is_a_400_naming_it(api, loaded):
    raw = '{"pipeline": "train", "resources": {"cpus": 1e400}}'  # JSON parses it as inf
    response = api.post(PROCESSES, raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "resources.cpus: the number is out of range" in response.json()["detail"]
    assert Process.objects.count() == 0


def test_every_refused_field_is_named_at_once(api, loaded):
    response = post(api, {"pipeline": "fixed", "resources": {"gpus": 2},
                          "image": "orchestration/python:latest", "env": {"SEED": "1"}})
    assert response.status_code == 400
    assert sorted(response.json()["fields"]) == ["env", "image", "resources"]
    assert Process.objects.count() == 0


def test_a_rerun_past_limits_lowered_since_is_refused_naming_the_field(api, loaded, tmp_path):
    first = post(api, {"pipeline": "train", "resources": {"cpus": 4}})
    assert first.status_code == 201, first.content
    lowered = GPU_POOL.replace("cpus: 4,", "cpus: 2,")
    assert not pipelines_load(folder_with(tmp_path, {"pools/gpu-box.yaml": lowered})).errors
    again = api.post(f"{PROCESSES}{first.json()['id']}/rerun/")
    assert again.status_code == 400, again.content
    assert "resources.cpus: 4 is more than pool gpu-box allows (max_resources.cpus: 2)." in \
        again.json()["fields"]["resources"]
    assert Process.objects.count() == 1


# --- files that fail to load ------------------------------------------------------------------


@pytest.mark.parametrize("pool, words", [
    ("gpus: 2\n", "gpus: only docker pools count GPUs, not local"),
    ("images: ['orchestration/*:*']\n", "images: the local target runs no images"),
    ("max_resources: {disk: 1}\n", "max_resources: unknown keys disk"),
    ("max_resources: {cpus: 0}\n", "max_resources.cpus: must be a positive number"),
    ("max_resources: {memory: lots}\n", "max_resources.memory: cannot read 'lots'"),
    ("max_resources: 4\n", "max_resources: must be a mapping"),
])
def test_a_malformed_local_pool_file_is_refused_naming_it(tmp_path, pipelines, pool, words):
    text = f"name: odd\ntarget: local\ncapacity: 2\nsettings: {{}}\n{pool}"
    report = pipelines_load(folder_with(tmp_path, {"pools/odd.yaml": text}))
    assert words in report.errors["pools/odd.yaml"], report.errors


@pytest.mark.parametrize("pool, words", [
    ("gpus: 0\n", "gpus: must be a number of at least 1 or a list of distinct device ids"),
    ("gpus: ['0', '0']\n", "gpus: must be a number of at least 1 or a list of distinct"),
    ("gpus: ['0 1']\n", "gpus: must be a number of at least 1 or a list of distinct"),
    ("gpus: 2\nmax_resources: {gpus: 3}\n", "max_resources.gpus: 3 is more than the pool's 2"),
    ("images: orchestration/*\n", "images: must be a list of image patterns"),
    ("images: ['bad image']\n", "images: must be a list of image patterns"),
])
def test_a_malformed_docker_pool_file_is_refused_naming_it(tmp_path, pipelines, pool, words):
    text = f"name: odd\ntarget: docker\ncapacity: 2\nsettings: {{}}\n{pool}"
    report = pipelines_load(folder_with(tmp_path, {"pools/odd.yaml": text}))
    assert words in report.errors["pools/odd.yaml"], report.errors


@pytest.mark.parametrize("pipeline, extra, words", [
    ("fixed", "allow: {image: yes please}\n", "allow.image: must be true or false"),
    ("fixed", "allow: {volumes: true}\n", "allow: must be a mapping with image"),
    ("fixed", "allow: {env: SEED}\n", "allow.env: must be a list of environment variable"),
    ("fixed", "allow: {env: [ORCH_WORK_DIR]}\n", "allow.env: 'ORCH_WORK_DIR' is reserved"),
    ("fixed", "allow: {env: [TOKEN]}\nsecrets: [TOKEN]\n",
     "allow.env: 'TOKEN' is a secret of the pipeline"),
    ("any-env", "allow: {image: true}\n", "allow.image: the local target runs no images"),
    ("fixed", "resources: {cpus: 8}\n",
     "resources.cpus: 8 is more than 4 (pool gpu-box's max_resources.cpus)"),
])
def test_a_malformed_pipeline_file_is_refused_naming_it(tmp_path, pipelines, pipeline, extra,
                                                        words):
    base = {"fixed": FIXED, "any-env": ANY_ENV.replace("allow: {env: true}\n", "")}[pipeline]
    report = pipelines_load(folder_with(tmp_path, {
        "pools/gpu-box.yaml": GPU_POOL, f"{pipeline}.yaml": base.lstrip() + extra}))
    assert words in report.errors[f"{pipeline}.yaml"], report.errors


def test_a_pipeline_without_allow_keeps_its_version_when_loaded_again(tmp_path, pipelines):
    """``allow`` is optional: files without it keep the digest they had before it existed."""
    report = pipelines_load(folder_with(tmp_path, {}))
    assert not report.loaded, report.loaded
    assert "hello v1" in report.unchanged
