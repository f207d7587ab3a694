"""A process's outputs through the API: recorded from the event that ends it (once, whatever
is redelivered; an entry that is no output of that process is not believed), listed at
``GET /api/processes/<id>/outputs/``, downloaded whole or by range at
``.../outputs/<path>``, behind the team's wall (404 outside, a viewer may read), and turned
into a dataset with ``POST /api/datasets/ {"from_output": ...}`` without a byte through the
client; the sweep of orphan dataset objects."""

from __future__ import annotations

import hashlib
import io
import os
import time

import pytest
from django.core.management import call_command

from apps.datasets.models import Dataset, ProcessOutput
from apps.datasets.storage import data_storage
from apps.processes.events import events_apply
from apps.processes.models import Process
from apps.teams.models import Team
from apps.teams.roles import Role
from apps.teams.services import team_client_add
from tests.worker_reports import LOCAL_WORKER
from workers.contract import Event, State
from workers.storage import FileStorage

pytestmark = pytest.mark.django_db

PROCESSES = "/api/processes/"
DATASETS = "/api/datasets/"
RESULT = b'{"sha256": "abc"}\n'
TABLE = b"word\tcount\n" + b"to\t2\n" * 1000


@pytest.fixture(autouse=True)
def store(settings, tmp_path) -> FileStorage:
    settings.DATA_STORAGE_URL = f"file://{tmp_path}/storage"
    return FileStorage(tmp_path / "storage")


@pytest.fixture
def alice(make_client, pipelines):
    return make_client("alice")[1]


def stored(process_id, path: str, data: bytes) -> dict:
    """An output as the worker stores it (under the process's prefix) and reports it."""
    key = f"outputs/{process_id}/{path}"
    size, sha256 = data_storage().put(key, io.BytesIO(data))
    return {"path": path, "size": size, "sha256": sha256, "key": key}


def end(process_id, state: State = State.SUCCEEDED, outputs=None) -> Process:
    Process.objects.filter(pk=process_id).update(state=State.RUNNING, handle="h",
                                                 host=LOCAL_WORKER.host)
    events_apply([Event(process_id=str(process_id), source="test", state=state, exit_code=0,
                        outputs=outputs)], LOCAL_WORKER)
    return Process.objects.get(pk=process_id)


@pytest.fixture
def finished(alice):
    """A hello run that ended SUCCEEDED with two outputs: result.json and tables/counts.tsv."""
    pid = alice.post(PROCESSES, {"pipeline": "hello"}, format="json").json()["id"]
    end(pid, outputs=[stored(pid, "result.json", RESULT),
                      stored(pid, "tables/counts.tsv", TABLE)])
    return pid


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def test_outputs_are_recorded_with_the_end_and_listed(alice, finished):
    process = Process.objects.get(pk=finished)
    assert process.state == State.SUCCEEDED
    response = alice.get(f"{PROCESSES}{finished}/outputs/")
    assert response.status_code == 200
    assert response.json() == [
        {"path": "result.json", "size": len(RESULT),
         "sha256": hashlib.sha256(RESULT).hexdigest()},
        {"path": "tables/counts.tsv", "size": len(TABLE),
         "sha256": hashlib.sha256(TABLE).hexdigest()},
    ]
    urls = alice.get(f"{PROCESSES}{finished}/").json()["urls"]
    assert urls["outputs"].endswith(f"{PROCESSES}{finished}/outputs/")


def test_a_redelivered_end_records_nothing_twice(alice, finished):
    again = [stored(finished, "result.json", RESULT), stored(finished, "late.txt", b"x")]
    events_apply([Event(process_id=finished, source="test", state=State.SUCCEEDED,
                        outputs=again)], LOCAL_WORKER)
    assert sorted(ProcessOutput.objects.filter(process_id=finished)
                  .values_list("path", flat=True)) == ["result.json", "tables/counts.tsv"]


def test_an_end_without_outputs_still_ends_the_process(alice):
    pid = alice.post(PROCESSES, {"pipeline": "hello"}, format="json").json()["id"]
    assert end(pid).state == State.SUCCEEDED  # an older worker: no outputs field
    assert alice.get(f"{PROCESSES}{pid}/outputs/").json() == []


def test_entries_that_are_no_output_of_the_process_are_not_believed(alice, finished):
    """A worker cannot make an output of another process's object, or of a dataset's."""
    other = alice.post(PROCESSES, {"pipeline": "hello"}, format="json").json()["id"]
    dataset = Dataset.objects.create(name="d", size=1, sha256="0" * 64, storage_key="datasets/x")
    forged = [
        {"path": "stolen", "size": 1, "sha256": "0" * 64, "key": dataset.storage_key},
        {"path": "result.json", "size": 1, "sha256": "0" * 64,
         "key": f"outputs/{finished}/result.json"},  # another process's prefix
        {"path": "../up", "size": 1, "sha256": "0" * 64, "key": f"outputs/{other}/../up"},
        {"path": "ok.txt", "size": -1, "sha256": "0" * 64, "key": f"outputs/{other}/ok.txt"},
        "not a dict",
        stored(other, "good.txt", b"good"),
    ]
    assert end(other, outputs=forged).state == State.SUCCEEDED
    assert [o["path"] for o in alice.get(f"{PROCESSES}{other}/outputs/").json()] == ["good.txt"]


def test_an_output_downloads_whole_and_by_range_as_an_attachment(alice, finished):
    response = alice.get(f"{PROCESSES}{finished}/outputs/tables/counts.tsv")
    assert response.status_code == 200
    assert body_of(response) == TABLE
    assert response["Content-Length"] == str(len(TABLE))
    assert response["Content-Disposition"] == 'attachment; filename="counts.tsv"'
    assert response["ETag"] == f'"{hashlib.sha256(TABLE).hexdigest()}"'
    part = alice.get(f"{PROCESSES}{finished}/outputs/result.json", HTTP_RANGE="bytes=2-7")
    assert part.status_code == 206
    assert body_of(part) == RESULT[2:8]
    assert part["Content-Range"] == f"bytes 2-7/{len(RESULT)}"
    past = alice.get(f"{PROCESSES}{finished}/outputs/result.json", HTTP_RANGE="bytes=999-")
    assert past.status_code == 416


def test_no_such_output_is_a_404(alice, finished):
    for path in ("nothing.txt", "tables", "tables/", "../result.json"):
        response = alice.get(f"{PROCESSES}{finished}/outputs/{path}")
        assert response.status_code == 404, (path, response.content)


def test_outputs_stay_behind_the_teams_wall(alice, finished, make_client):
    """Another team gets a 404 on every output route; a viewer of the team may read them."""
    bob = make_client("bob")[1]
    for url in (f"{PROCESSES}{finished}/outputs/", f"{PROCESSES}{finished}/outputs/result.json"):
        assert bob.get(url).status_code == 404
    app, viewer = make_client("carol")
    team_client_add(Team.objects.get(slug="alice"), app, role=Role.VIEWER)
    assert viewer.get(f"{PROCESSES}{finished}/outputs/").status_code == 200
    assert body_of(viewer.get(f"{PROCESSES}{finished}/outputs/result.json")) == RESULT
    refused = bob.post(DATASETS, {"from_output": {"process": finished, "path": "result.json"}},
                       format="json")
    assert refused.status_code == 400
    assert "from_output.process" in refused.json()["fields"]


def test_an_output_becomes_a_dataset_of_the_process_team(alice, finished, store):
    response = alice.post(DATASETS, {"from_output": {"process": finished,
                                                     "path": "tables/counts.tsv"}},
                          format="json")
    assert response.status_code == 201, response.content
    dataset = response.json()
    assert (dataset["name"], dataset["size"], dataset["team"]) == ("counts.tsv", len(TABLE),
                                                                  "alice")
    assert dataset["sha256"] == hashlib.sha256(TABLE).hexdigest()
    assert body_of(alice.get(f"{DATASETS}{dataset['id']}/content/")) == TABLE
    # One run feeds the next: the new dataset is an input like any upload.
    run = alice.post(PROCESSES, {"pipeline": "checksum", "used_config": {"input": dataset["id"]}},
                     format="json")
    assert run.status_code == 201, run.content
    # Its own copy: deleting it leaves the output whole.
    Process.objects.filter(pk=run.json()["id"]).update(state=State.SUCCEEDED)
    assert alice.delete(f"{DATASETS}{dataset['id']}/").status_code == 204
    assert body_of(alice.get(f"{PROCESSES}{finished}/outputs/tables/counts.tsv")) == TABLE


@pytest.mark.parametrize("body, field", [
    ({"from_output": {"process": "nope", "path": "result.json"}}, "from_output.process"),
    ({"from_output": {"process": "00000000-0000-0000-0000-000000000000",
                      "path": "result.json"}}, "from_output.process"),
    ({"from_output": {"process": "PID", "path": "missing.json"}}, "from_output.path"),
    ({"from_output": {"process": "PID", "path": ""}}, "from_output.path"),
    ({"from_output": {"process": "PID"}}, "from_output.path"),
    ({"from_output": {"process": "PID", "path": "result.json", "size": 1}}, "from_output.size"),
    ({"from_output": "PID/result.json"}, "from_output"),
    ({"from_output": {"process": "PID", "path": "result.json"}, "name": "a\nb"}, "name"),
    ({"from_output": {"process": "PID", "path": "result.json"}, "team": "x"}, "team"),
])
def test_a_bad_from_output_is_a_400_naming_the_field(alice, finished, body, field):
    text = str(body).replace("PID", finished).replace("'", '"').replace("\n", "\\n")
    response = alice.post(DATASETS, text, content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"], response.json()
    assert not Dataset.objects.exists()


def test_a_viewer_cannot_make_a_dataset_of_an_output(finished, make_client):
    app, viewer = make_client("dave")
    team_client_add(Team.objects.get(slug="alice"), app, role=Role.VIEWER)
    response = viewer.post(DATASETS, {"from_output": {"process": finished,
                                                      "path": "result.json"}}, format="json")
    assert response.status_code == 403
    assert "operator" in response.json()["detail"]


def test_the_sweep_removes_old_orphan_objects_only(alice, store, capsys):
    kept = alice.post(DATASETS, {"file": io.BytesIO(b"kept")}, format="multipart").json()
    gone = alice.post(DATASETS, {"file": io.BytesIO(b"gone")}, format="multipart").json()
    assert alice.delete(f"{DATASETS}{gone['id']}/").status_code == 204
    # What a crash between storing the bytes and making the row leaves: bytes with no row,
    # and a partial write; one is old, one is new (an upload in flight).
    data_storage().put("datasets/old-orphan", io.BytesIO(b"orphan"))
    data_storage().put("datasets/new-orphan", io.BytesIO(b"orphan"))
    partial = store.root / "datasets" / ".partial-crashed"
    partial.write_bytes(b"half")
    data_storage().put("datasets/undeleted", io.BytesIO(b"a delete whose store failed"))
    Dataset.objects.filter(pk=gone["id"]).update(storage_key="datasets/undeleted")
    hour_ago = time.time() - 3700
    for name in ("old-orphan", ".partial-crashed", "undeleted", kept["id"]):
        os.utime(store.root / "datasets" / name, (hour_ago, hour_ago))
    call_command("sweep_orphans")
    left = sorted(p.name for p in (store.root / "datasets").iterdir())
    assert left == sorted([kept["id"], "new-orphan"])
    assert set(capsys.readouterr().out.split()) == {
        "datasets/old-orphan", "datasets/.partial-crashed", "datasets/undeleted"}
    call_command("sweep_orphans", "--older-than", "0", "--dry-run")
    assert capsys.readouterr().out.split() == ["datasets/new-orphan"]
    assert (store.root / "datasets" / "new-orphan").exists()


def test_outputs_and_the_sweep_on_an_s3_bucket(alice, settings):
    """The same on a bucket of moto's S3 server (an emulator: no AWS here)."""
    from tests.test_storage import s3_serving
    from workers.storage.s3 import s3_client

    with s3_serving():
        client, bucket = s3_client(), f"orch-{os.urandom(6).hex()}"
        client.create_bucket(Bucket=bucket)
        settings.DATA_STORAGE_URL = f"s3://{bucket}/orch"
        pid = alice.post(PROCESSES, {"pipeline": "hello"}, format="json").json()["id"]
        end(pid, outputs=[stored(pid, "tables/counts.tsv", TABLE)])
        download = alice.get(f"{PROCESSES}{pid}/outputs/tables/counts.tsv")
        assert body_of(download) == TABLE
        kept = alice.post(DATASETS, {"from_output": {"process": pid,
                                                     "path": "tables/counts.tsv"}},
                          format="json")
        assert kept.status_code == 201, kept.content
        assert body_of(alice.get(f"{DATASETS}{kept.json()['id']}/content/")) == TABLE
        data_storage().put("datasets/orphan", io.BytesIO(b"no row"))
        from apps.datasets.sweep import orphans_sweep

        # Every object counts as old here (moto's times cannot be set back): the row decides.
        assert orphans_sweep(data_storage(), -60) == ["datasets/orphan"]
        keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
        assert keys == [f"orch/datasets/{kept.json()['id']}",
                        f"orch/outputs/{pid}/tables/counts.tsv"]
