"""The signed, expiring data URLs a pool with ``data_access: url`` gets in its job specs: the
worker GETs each input and PUTs each output without a bearer token, the signature being the
right. Forged, expired, another process's or another kind's signatures are refused; an ended
process's URLs are closed; an output's PUT is bounded and lands under its process's prefix."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from apps.datasets.data_urls import input_url, upload_url
from apps.datasets.storage import data_storage
from apps.processes.models import Process
from workers.contract import State

pytestmark = pytest.mark.django_db

DATA = b"the quick brown fox\n" * 50


@pytest.fixture(autouse=True)
def store(settings, tmp_path):
    settings.DATA_STORAGE_URL = f"file://{tmp_path}/storage"
    settings.PUBLIC_URL = "http://testserver"


@pytest.fixture
def alice(make_client, pipelines):
    return make_client("alice")[1]


@pytest.fixture
def worker():
    """What a worker on a Slurm submission node has: HTTP, and no token."""
    return Client()


@pytest.fixture
def run(alice):
    """(process id, dataset id) of a checksum run on an uploaded dataset."""
    dataset = alice.post("/api/datasets/", {"file": SimpleUploadedFile("in.txt", DATA)},
                         format="multipart").json()["id"]
    pid = alice.post("/api/processes/", {"pipeline": "checksum",
                                         "used_config": {"input": dataset}},
                     format="json").json()["id"]
    return pid, dataset


def path_of(url: str) -> str:
    return url.removeprefix("http://testserver")


def signed_days_ago(days: float, make, *args) -> str:
    with mock.patch("django.core.signing.time.time", return_value=time.time() - days * 86400):
        return make(*args)


def put(worker, url: str, data: bytes):
    return worker.put(path_of(url), data, content_type="application/octet-stream")


def test_an_input_url_serves_the_dataset_without_a_token(worker, run):
    response = worker.get(path_of(input_url(*run)))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == DATA
    part = worker.get(path_of(input_url(*run)), HTTP_RANGE="bytes=4-8")
    assert b"".join(part.streaming_content) == DATA[4:9]


def test_a_forged_or_expired_input_url_is_refused(worker, run, settings):
    url = path_of(input_url(*run))
    token = url.rsplit("/", 1)[1]
    forged = url.replace(token, token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb"))
    assert worker.get(forged).status_code == 403
    assert worker.get(url.replace(token, "not-a-token")).status_code == 403
    with override_settings(SECRET_KEY="another control plane's key"):
        another = input_url(*run)
    assert worker.get(path_of(another)).status_code == 403
    settings.DATA_URL_EXPIRES_S = 3600
    old = signed_days_ago(1, input_url, *run)
    response = worker.get(path_of(old))
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]


def test_an_input_url_reads_only_what_its_process_names(worker, run, alice):
    pid, dataset = run
    other = alice.post("/api/processes/", {"pipeline": "hello"}, format="json").json()["id"]
    assert worker.get(path_of(input_url(other, dataset))).status_code == 404
    # An output URL's signature is no input's, even for the same process.
    assert worker.get(path_of(upload_url(pid)).replace("/outputs/", "/inputs/")
                      .rstrip("/")).status_code == 403


def test_an_ended_process_inputs_and_outputs_are_closed(worker, run):
    pid, dataset = run
    Process.objects.filter(pk=pid).update(state=State.SUCCEEDED)
    assert worker.get(path_of(input_url(pid, dataset))).status_code == 409
    assert put(worker, upload_url(pid) + "late.txt", b"x").status_code == 409
    assert data_storage().stat(f"outputs/{pid}/late.txt") is None


def test_an_output_put_lands_under_its_process_prefix(worker, run):
    pid, _ = run
    response = put(worker, upload_url(pid) + "sub/result.json", b'{"ok": true}')
    assert response.status_code == 201, response.content
    assert response.json() == {"path": "sub/result.json", "size": 12,
                               "sha256": hashlib.sha256(b'{"ok": true}').hexdigest(),
                               "key": f"outputs/{pid}/sub/result.json"}
    with data_storage().open(f"outputs/{pid}/sub/result.json") as stored:
        assert stored.read() == b'{"ok": true}'


def test_a_forged_expired_or_other_process_output_url_is_refused(worker, run, alice,
                                                                 settings):
    pid, dataset = run
    url = upload_url(pid)
    token = url.rstrip("/").rsplit("/", 1)[1]
    other = alice.post("/api/processes/", {"pipeline": "hello"}, format="json").json()["id"]
    # Another process's signed token with this process's id pasted in is a forgery.
    theirs = upload_url(other).rstrip("/").rsplit("/", 1)[1]
    pasted = base64.urlsafe_b64encode(json.dumps({"p": pid}, separators=(",", ":"))
                                      .encode()).decode().rstrip("=")
    forged = url.replace(token, pasted + theirs[theirs.index(":"):])
    assert put(worker, forged + "x", b"x").status_code == 403
    assert put(worker, upload_url(other) + "x", b"x").status_code == 201  # theirs is theirs
    assert data_storage().stat(f"outputs/{other}/x") == 1
    assert put(worker, url.replace(token, token[::-1]) + "x", b"x").status_code == 403
    input_token = input_url(pid, dataset).rsplit("/", 1)[1]
    assert put(worker, url.replace(token, input_token) + "x", b"x").status_code == 403
    settings.DATA_URL_EXPIRES_S = 3600
    assert put(worker, signed_days_ago(1, upload_url, pid) + "x", b"x").status_code == 403
    assert data_storage().stat(f"outputs/{pid}/x") is None


def test_an_output_put_is_bounded_and_its_path_checked(worker, run, settings):
    pid, _ = run
    settings.OUTPUT_MAX_BYTES = 300 * 1024  # over MAX_REQUEST_BODY_BYTES: the view's own cap
    big = put(worker, upload_url(pid) + "big.bin", b"x" * (300 * 1024 + 1))
    assert big.status_code == 413
    assert "ORCH_OUTPUT_MAX_BYTES" in big.json()["detail"]
    assert put(worker, upload_url(pid) + "fits.bin", b"x" * (300 * 1024)).status_code == 201
    for bad in (".partial-x", "a//b"):
        response = put(worker, upload_url(pid) + bad, b"x")
        assert response.status_code == 400, (bad, response.content)
        assert "path" in response.json()["fields"]
    assert data_storage().stat(f"outputs/{pid}/big.bin") is None
