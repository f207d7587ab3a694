"""A pipeline's config names datasets (``"format": "dataset"``, a string or an array of them):
a POST or a re-run that names an unknown, deleted or another team's dataset is a 400 naming
the field, in the same words for all three, and creates nothing; a process records the
datasets it names (``GET /api/processes/<id>/`` shows them); its job spec carries them
(``JobSpec.inputs``) and where its outputs go (``JobSpec.outputs``); a delete of a dataset a
live process names is a 409."""

from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from apps.datasets.config_fields import dataset_refs
from apps.datasets.models import Dataset, DatasetUse
from apps.datasets.refs import uses_record
from apps.pipelines.services import pipelines_load
from apps.processes.messaging import job_spec
from apps.processes.models import Process
from tests.e2e.stack import pipelines_with
from workers.contract import JobSpec, State

pytestmark = pytest.mark.django_db

PROCESSES = "/api/processes/"
DATASETS = "/api/datasets/"
# A pipeline with a list of datasets beside a single one, on a pool whose workers reach data
# through signed URLs only.
MERGE = """
name: merge
version: "1"
target: local
pool: by-url
run: {command: ["true"]}
config_schema:
  type: object
  properties:
    reference: {type: string, format: dataset}
    files: {type: array, items: {type: string, format: dataset}}
    label: {type: string}
  required: [files]
  additionalProperties: false
defaults: {label: x}
"""
BY_URL_POOL = "name: by-url\ntarget: local\ncapacity: 2\nsettings: {data_access: url}\n"


@pytest.fixture(autouse=True)
def store(settings, tmp_path):
    settings.DATA_STORAGE_URL = f"file://{tmp_path}/storage"


@pytest.fixture
def merge(tmp_path, pipelines):
    folder = pipelines_with(tmp_path / "pipelines", {"merge": MERGE})
    (folder / "pools" / "by-url.yaml").write_text(BY_URL_POOL)
    report = pipelines_load(folder)
    assert not report.errors, report.errors


@pytest.fixture
def alice(make_client, pipelines):
    return make_client("alice")[1]


def uploaded(api, data: bytes = b"to be or not to be\n", name: str = "text.txt") -> dict:
    response = api.post(DATASETS, {"file": SimpleUploadedFile(name, data)}, format="multipart")
    assert response.status_code == 201, response.content
    return response.json()


def post(api, pipeline: str, config: dict):
    return api.post(PROCESSES, {"pipeline": pipeline, "used_config": config}, format="json")


def refusal(response, field: str = "used_config") -> list[str]:
    assert response.status_code == 400, response.content
    return response.json()["fields"][field]


def test_a_run_names_its_dataset_and_its_detail_shows_it(alice):
    dataset = uploaded(alice)
    response = post(alice, "checksum", {"input": dataset["id"], "top": 2})
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["used_config"]["input"] == dataset["id"]  # the API keeps showing the id
    detail = alice.get(f"{PROCESSES}{created['id']}/").json()
    assert detail["datasets"] == [{
        "id": dataset["id"], "name": "text.txt", "size": dataset["size"],
        "sha256": dataset["sha256"], "field": "used_config.input", "pointer": "/input"}]
    assert created["datasets"] == detail["datasets"]
    assert "datasets" not in alice.get(PROCESSES).json()["results"][0]  # not on the pages


def test_unknown_deleted_and_foreign_datasets_are_refused_in_the_same_words(
        alice, make_client):
    bob = make_client("bob")[1]
    foreign = uploaded(bob)["id"]
    deleted = uploaded(alice)["id"]
    assert alice.delete(f"{DATASETS}{deleted}/").status_code == 204
    unknown = str(uuid.uuid4())
    words = set()
    for refused in (unknown, deleted, foreign):
        messages = refusal(post(alice, "checksum", {"input": refused}))
        assert len(messages) == 1
        assert messages[0].startswith("used_config.input: ")
        words.add(messages[0].replace(refused, "ID"))
    assert len(words) == 1, words  # nothing tells a foreign dataset from a missing one
    assert "no dataset" in words.pop()
    assert refusal(post(alice, "checksum", {"input": "reads.fastq"}))[0].startswith(
        "used_config.input: ")
    assert not Process.objects.exists()
    assert not DatasetUse.objects.exists()


def test_an_array_of_datasets_names_the_refused_item(alice, merge):
    good = uploaded(alice)["id"]
    messages = refusal(post(alice, "merge", {"files": [good, str(uuid.uuid4()), good]}))
    assert len(messages) == 1
    assert messages[0].startswith("used_config.files.1: ")
    assert not Process.objects.exists()


def test_a_schema_error_is_named_before_the_datasets(alice):
    messages = refusal(post(alice, "checksum", {"input": 7}))
    assert messages == ["used_config.input: 7 is not of type 'string'"]


def test_a_rerun_of_a_run_whose_dataset_is_gone_is_a_400(alice):
    dataset = uploaded(alice)["id"]
    first = post(alice, "checksum", {"input": dataset}).json()["id"]
    Process.objects.filter(pk=first).update(state=State.SUCCEEDED)
    rerun = alice.post(f"{PROCESSES}{first}/rerun/")
    assert rerun.status_code == 201, rerun.content
    assert rerun.json()["datasets"][0]["id"] == dataset
    Process.objects.filter(pk=rerun.json()["id"]).update(state=State.SUCCEEDED)
    assert alice.delete(f"{DATASETS}{dataset}/").status_code == 204
    assert refusal(alice.post(f"{PROCESSES}{first}/rerun/"))[0].startswith(
        "used_config.input: ")
    assert Process.objects.count() == 2


def test_a_dataset_deleted_after_the_check_refuses_the_creation(alice):
    """The second check, under the datasets' row locks, in the creation's transaction: a
    delete that won the race leaves no process naming a dataset without bytes."""
    dataset = uploaded(alice)["id"]
    process = Process.objects.get(pk=post(alice, "hello", {}).json()["id"])
    refs = dataset_refs({"properties": {"input": {"format": "dataset"}}}, {"input": dataset})
    Dataset.objects.filter(pk=dataset).update(deleted_at=timezone.now())
    with pytest.raises(ValidationError) as refused:
        uses_record(process, refs)
    assert "used_config.input" in str(refused.value)


def test_a_delete_is_refused_while_a_live_run_names_the_dataset(alice):
    dataset = uploaded(alice)["id"]
    pid = post(alice, "checksum", {"input": dataset}).json()["id"]
    response = alice.delete(f"{DATASETS}{dataset}/")
    assert response.status_code == 409, response.content
    assert pid in response.json()["detail"]
    Process.objects.filter(pk=pid).update(state=State.FAILED)
    assert alice.delete(f"{DATASETS}{dataset}/").status_code == 204
    # The run still names it, marked by its row: the history of what it read.
    assert alice.get(f"{PROCESSES}{pid}/").json()["datasets"][0]["id"] == dataset


def test_the_job_spec_carries_inputs_and_where_outputs_go(alice, settings):
    settings.OUTPUT_MAX_BYTES = 12345
    dataset = uploaded(alice, name="reads.v2.fastq")
    pid = post(alice, "checksum", {"input": dataset["id"]}).json()["id"]
    spec = JobSpec.from_dict(job_spec(Process.objects.get(pk=pid)).to_dict())
    assert spec.inputs == [{
        "pointer": "/input", "name": "input.fastq", "dataset": dataset["id"],
        "key": f"datasets/{dataset['id']}", "size": dataset["size"],
        "sha256": dataset["sha256"], "url": ""}]
    assert spec.outputs == {"prefix": f"outputs/{pid}/", "max_bytes": 12345,
                            "upload_url": ""}
    assert spec.config["input"] == dataset["id"]  # the worker writes the staged path


def test_a_pool_with_data_access_url_gets_signed_urls(alice, merge, settings):
    settings.PUBLIC_URL = "https://orch.example.org"
    one, two = uploaded(alice, name="a.txt")["id"], uploaded(alice, name="b")["id"]
    pid = post(alice, "merge", {"files": [one, two, one], "reference": two}).json()["id"]
    spec = job_spec(Process.objects.get(pk=pid))
    assert [(i["pointer"], i["name"], i["dataset"]) for i in spec.inputs] == [
        ("/files/0", "files-0.txt", one), ("/files/1", "files-1", two),
        ("/files/2", "files-2.txt", one), ("/reference", "reference", two)]
    for item in spec.inputs:
        assert item["url"].startswith("https://orch.example.org/data/inputs/")
    assert spec.outputs["upload_url"].startswith("https://orch.example.org/data/outputs/")
    assert spec.outputs["upload_url"].endswith("/")
