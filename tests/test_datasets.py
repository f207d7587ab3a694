"""Datasets through the API (issue 19, first step): upload, list, read, download whole or by
range, delete; the size cap; the wall between teams on every route; the roles; a delete
refused while a live process uses the dataset; the audit; an upload cut short, through a
real gunicorn, leaves nothing behind; and curl through a live server, as the README shows.

Each test keeps its datasets in a store of its own (ORCH_STORAGE_URL, a tmp dir) and points
Django's temporary files at a dir of its own, so "nothing left behind" is read there: no
object, no partial object in the store, no temporary file."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django.utils.text import slugify
from oauth2_provider.models import AccessToken, Application
from rest_framework.test import APIClient

from apps.audit.models import Action, AuditEntry
from apps.datasets.models import Dataset
from apps.processes.models import Process
from apps.processes.services import process_create
from apps.teams.models import TeamClient
from apps.teams.roles import Role
from apps.teams.services import team_client_add, team_create, team_member_add
from workers.contract import State
from workers.storage import FileStorage

pytestmark = pytest.mark.django_db

DATASETS = "/api/datasets/"
DIGITS = b"0123456789"


@pytest.fixture(autouse=True)
def store(settings, tmp_path) -> FileStorage:
    """A store and an upload dir of this test's own."""
    settings.DATA_STORAGE_URL = f"file://{tmp_path}/storage"
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(uploads)
    return FileStorage(tmp_path / "storage")


def partials(store: FileStorage) -> list[Path]:
    return list(store.root.rglob(".partial-*")) if store.root.exists() else []


def objects(store: FileStorage) -> list[str]:
    """Every file in the store: objects, and partial ones."""
    return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())


def temp_files(settings) -> list[str]:
    return sorted(os.listdir(settings.FILE_UPLOAD_TEMP_DIR))


def upload(api, data: bytes = DIGITS, filename: str = "digits.txt", **fields):
    return api.post(DATASETS, {"file": SimpleUploadedFile(filename, data), **fields},
                    format="multipart")


def uploaded(api, data: bytes = DIGITS, **fields) -> dict:
    response = upload(api, data, **fields)
    assert response.status_code == 201, response.content
    return response.json()


def body_of(response) -> bytes:
    """A streamed answer's bytes (read to the end, the test client closes it)."""
    return b"".join(response.streaming_content)


def refused(response, status: int, field: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert field in body["fields"], body
    return body


@pytest.fixture
def alice(make_client):
    return make_client("alice")[1]


# --- upload, list, read, download ---------------------------------------------------------------


def test_an_upload_answers_the_dataset_and_keeps_its_bytes(alice, store, settings):
    data = os.urandom(3 * 1024 * 1024 + 7)
    body = uploaded(alice, data, description="random bytes")
    assert set(body) == {"id", "name", "size", "sha256", "created_at", "owner", "team",
                         "description"}
    assert body["name"] == "digits.txt"  # the file's name by default
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert (body["owner"], body["team"], body["description"]) == (
        "client-alice", "alice", "random bytes")
    assert objects(store) == [f"datasets/{body['id']}"]
    assert (store.root / "datasets" / body["id"]).read_bytes() == data
    assert temp_files(settings) == []  # streamed to the store: no temporary file


def test_a_name_given_wins_over_the_files(alice):
    assert uploaded(alice, name="reads, run 7")["name"] == "reads, run 7"


def test_an_empty_file_is_a_dataset(alice):
    body = uploaded(alice, b"")
    assert (body["size"], body["sha256"]) == (0, hashlib.sha256(b"").hexdigest())
    response = alice.get(f"{DATASETS}{body['id']}/content/")
    assert response.status_code == 200
    assert body_of(response) == b""


def test_the_list_shows_the_teams_datasets_newest_first_filtered_by_exact_name(alice):
    first = uploaded(alice, name="reads")
    second = uploaded(alice, name="reads.txt")
    third = uploaded(alice, name="reads")
    listing = alice.get(DATASETS).json()
    assert listing["count"] == 3
    assert [d["id"] for d in listing["results"]] == [third["id"], second["id"], first["id"]]
    assert listing["results"][0] == alice.get(f"{DATASETS}{third['id']}/").json()
    named = alice.get(DATASETS, {"name": "reads"}).json()
    assert [d["id"] for d in named["results"]] == [third["id"], first["id"]]  # exact, not "in"
    assert alice.get(DATASETS, {"name": "READS"}).json()["count"] == 0
    page = alice.get(DATASETS, {"page_size": 2, "page": 2}).json()
    assert [d["id"] for d in page["results"]] == [first["id"]]
    assert alice.get(DATASETS, {"page_size": 2, "page": 3}).status_code == 404  # past the end
    refused(alice.get(DATASETS, {"page_size": 501}), 400, "page_size")


def test_the_detail_of_a_dataset(alice):
    body = uploaded(alice)
    assert alice.get(f"{DATASETS}{body['id']}/").json() == body


def test_the_content_is_the_bytes_as_an_attachment(alice):
    data = os.urandom(2 * 1024 * 1024 + 3)
    body = uploaded(alice, data, name="run 7 résumé.bin")
    response = alice.get(f"{DATASETS}{body['id']}/content/")
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(data))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Accept-Ranges"] == "bytes"
    assert response["ETag"] == f'"{body["sha256"]}"'
    assert response["Content-Disposition"] == (
        "attachment; filename*=utf-8''run%207%20r%C3%A9sum%C3%A9.bin")
    assert body_of(response) == data
    quoted = uploaded(alice, name='a "b".txt')
    plain = alice.get(f"{DATASETS}{quoted['id']}/content/")
    assert plain["Content-Disposition"] == r'attachment; filename="a \"b\".txt"'
    body_of(plain)


@pytest.mark.parametrize("asked, status, content_range, expected", [
    ("bytes=2-5", 206, "bytes 2-5/10", b"2345"),
    ("bytes=7-", 206, "bytes 7-9/10", b"789"),
    ("bytes=-3", 206, "bytes 7-9/10", b"789"),
    ("bytes=-30", 206, "bytes 0-9/10", DIGITS),
    ("bytes=8-100", 206, "bytes 8-9/10", b"89"),
    ("bytes=9-9", 206, "bytes 9-9/10", b"9"),
    ("bytes=0-0", 206, "bytes 0-0/10", b"0"),
    ("bytes=0-1,4-5", 200, None, DIGITS),  # several ranges: the whole file
    ("bytes=5-2", 200, None, DIGITS),  # not a range: ignored
    ("lines=1-2", 200, None, DIGITS),
])
def test_one_range_is_a_206_with_those_bytes(alice, asked, status, content_range, expected):
    body = uploaded(alice)
    response = alice.get(f"{DATASETS}{body['id']}/content/", HTTP_RANGE=asked)
    assert response.status_code == status
    assert response.get("Content-Range") == content_range
    assert response["Content-Length"] == str(len(expected))
    assert body_of(response) == expected


def test_if_range_of_another_file_gets_the_whole_file(alice):
    body = uploaded(alice)
    url = f"{DATASETS}{body['id']}/content/"
    same = alice.get(url, HTTP_RANGE="bytes=2-3", HTTP_IF_RANGE=f'"{body["sha256"]}"')
    assert (same.status_code, body_of(same)) == (206, b"23")
    other = alice.get(url, HTTP_RANGE="bytes=2-3", HTTP_IF_RANGE='"0000"')
    assert (other.status_code, body_of(other)) == (200, DIGITS)


@pytest.mark.parametrize("data, asked", [
    (DIGITS, "bytes=10-"), (DIGITS, "bytes=100-200"), (DIGITS, "bytes=-0"), (b"", "bytes=0-"),
    (b"", "bytes=-5"),
])
def test_a_range_past_the_end_is_a_416_saying_the_size(alice, data, asked):
    body = uploaded(alice, data)
    response = alice.get(f"{DATASETS}{body['id']}/content/", HTTP_RANGE=asked)
    answer = refused(response, 416, "Range")
    assert response["Content-Range"] == f"bytes */{len(data)}"
    assert answer["code"] == "range_not_satisfiable"


# --- bad input: a 4xx naming the field, nothing kept ---------------------------------------------


@pytest.mark.parametrize("fields, field", [
    ({"name": "two\nlines"}, "name"),
    ({"name": "   "}, "name"),
    ({"name": ""}, "name"),
    ({"team": ""}, "team"),
    ({"name": "x" * 256}, "name"),
    ({"description": "x" * 10_001}, "description"),
    ({"colour": "blue"}, "colour"),
    ({"team": "no-such-team"}, "team"),
])
def test_bad_fields_are_400s_naming_them_and_keep_nothing(alice, store, settings, fields,
                                                          field):
    refused(upload(alice, **fields), 400, field)
    assert not Dataset.objects.exists()
    assert objects(store) == []
    assert temp_files(settings) == []


def test_no_file_is_a_400_naming_file(alice):
    refused(alice.post(DATASETS, {"name": "x"}, format="multipart"), 400, "file")
    refused(alice.post(DATASETS, {"file": "not a file"}, format="multipart"), 400, "file")


def test_a_second_file_or_a_file_under_another_name_is_refused(alice, store, settings):
    two = alice.post(DATASETS, {"file": [SimpleUploadedFile("a", b"a"),
                                         SimpleUploadedFile("b", b"b")]}, format="multipart")
    refused(two, 400, "file")
    other = alice.post(DATASETS, {"file": SimpleUploadedFile("a", b"a"),
                                  "extra": SimpleUploadedFile("b", b"b")}, format="multipart")
    refused(other, 400, "extra")
    assert not Dataset.objects.exists()
    assert objects(store) == []
    assert temp_files(settings) == []


def test_json_is_no_upload_it_names_a_process_output(alice):
    # JSON makes a dataset of a process's output (tests/test_outputs.py), never of a file.
    refused(alice.post(DATASETS, {"name": "x"}, format="json"), 400, "from_output")
    response = alice.post(DATASETS, "x", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


# --- the size cap --------------------------------------------------------------------------------


def test_a_file_over_the_cap_is_a_413_naming_it_and_keeps_nothing(alice, store, settings):
    settings.DATASET_MAX_BYTES = 10
    assert uploaded(alice, DIGITS)["size"] == 10  # at the cap: kept
    response = upload(alice, DIGITS + b"!")
    body = refused(response, 413, "file")
    assert body["code"] == "too_large"
    assert "10 bytes" in body["detail"]
    assert "ORCH_DATASET_MAX_BYTES" in body["detail"]
    assert Dataset.objects.count() == 1
    assert len(objects(store)) == 1
    assert temp_files(settings) == []


def test_a_file_over_the_cap_is_refused_while_it_arrives(alice, store, settings):
    """A body within the cap plus the form's allowance, its file over the cap: refused once
    the file's bytes pass the cap, what arrived removed from the store."""
    settings.DATASET_MAX_BYTES = 3 * 1024 * 1024
    response = upload(alice, os.urandom(settings.DATASET_MAX_BYTES + 100_000))
    body = refused(response, 413, "file")
    assert "The file is over the limit of 3145728 bytes" in body["detail"]  # not its length
    assert not Dataset.objects.exists()
    assert objects(store) == []
    assert temp_files(settings) == []


def test_a_body_too_long_for_any_upload_is_refused_before_it_is_read(alice, settings):
    settings.DATASET_MAX_BYTES = 10
    response = upload(alice, b"x" * (settings.MAX_REQUEST_BODY_BYTES + 100))
    body = refused(response, 413, "file")
    assert body["detail"].startswith("The request body is")  # its length alone
    assert "at most 10 bytes (ORCH_DATASET_MAX_BYTES)" in body["detail"]
    assert not Dataset.objects.exists()


def test_the_upload_is_not_held_to_the_other_routes_body_limit(alice, settings):
    data = os.urandom(settings.MAX_REQUEST_BODY_BYTES * 4)
    assert uploaded(alice, data)["size"] == len(data)
    refused(alice.post("/api/processes/", {"pipeline": "x" * len(data)}, format="json"),
            413, "body")


# --- teams and roles: every route ----------------------------------------------------------------

# caller -> (kind, team, role, token scope)
CALLERS = {
    "client a viewer": ("client", "a", Role.VIEWER, "read write"),
    "client a operator": ("client", "a", Role.OPERATOR, "read write"),
    "client a admin": ("client", "a", Role.ADMIN, "read write"),
    "client a operator, read-only token": ("client", "a", Role.OPERATOR, "read"),
    "client b operator": ("client", "b", Role.OPERATOR, "read write"),
    "client in no team": ("client", None, None, "read write"),
    "user a viewer": ("user", "a", Role.VIEWER, None),
    "user a operator": ("user", "a", Role.OPERATOR, None),
    "user b operator": ("user", "b", Role.OPERATOR, None),
    "staff in no team": ("user", None, None, None),
    "superuser": ("superuser", None, None, None),
}
ROUTES = ("list", "detail", "content", "delete", "upload for a", "upload")
SEES_A = {"client a viewer", "client a operator", "client a admin",
          "client a operator, read-only token", "user a viewer", "user a operator", "superuser"}
OPERATES_A = {"client a operator", "client a admin", "user a operator", "superuser"}


def expected(route: str, caller: str) -> int:
    if route == "list":
        return 200
    if caller == "client a operator, read-only token" and route in ("delete", "upload",
                                                                    "upload for a"):
        return 403  # the token's scope, before anything else
    if route.startswith("upload"):
        if caller in OPERATES_A or (route == "upload" and caller in ("client b operator",
                                                                     "user b operator")):
            return 201  # its own team (b's operators upload to b)
        if caller in ("client a viewer", "user a viewer"):
            return 403  # in a, but a viewer: the 403 names operator
        return 400  # in no team it may upload to: a 400 naming team
    if caller not in SEES_A:
        return 404  # outside a: never a 403, which would say it exists
    if route == "delete":
        return 204 if caller in OPERATES_A else 403
    return 200


def _client_of(name: str, team, role, scope: str) -> APIClient:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create(username=f"client-{slugify(name)}")
    app = Application.objects.create(
        name=name, user=user, client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS)
    if team is not None:
        team_client_add(team, app, role)
    token = AccessToken.objects.create(application=app, token=f"token-{slugify(name)}",
                                       scope=scope, expires=timezone.now() + timedelta(hours=1))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    return api


def _session_of(name: str, kind: str, team, role) -> APIClient:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create(username=slugify(name), is_staff=True,
                                           is_superuser=kind == "superuser")
    if team is not None:
        team_member_add(team, user, role)
    api = APIClient()
    api.force_login(user)
    return api


@pytest.fixture
def world(make_client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    teams = {"a": team_create(slug="a"), "b": team_create(slug="b")}
    owner = _client_of("uploader", teams["a"], Role.OPERATOR, "read write")
    dataset = uploaded(owner)
    callers = {name: (_client_of(name, teams[team] if team else None, role, scope)
                      if kind == "client" else
                      _session_of(name, kind, teams[team] if team else None, role))
               for name, (kind, team, role, scope) in CALLERS.items()}
    return dataset, callers


CASES = [(route, caller) for route in ROUTES for caller in CALLERS]


@pytest.mark.parametrize("route, caller", CASES, ids=[f"{r} by {c}" for r, c in CASES])
def test_who_may_do_what(world, store, route, caller):
    dataset, callers = world
    api = callers[caller]
    url = f"{DATASETS}{dataset['id']}/"
    response = {
        "list": lambda: api.get(DATASETS),
        "detail": lambda: api.get(url),
        "content": lambda: api.get(f"{url}content/"),
        "delete": lambda: api.delete(url),
        "upload for a": lambda: upload(api, b"new", team="a"),
        "upload": lambda: upload(api, b"new"),
    }[route]()
    assert response.status_code == expected(route, caller), response.content
    if route == "list":
        listed = [d["id"] for d in response.json()["results"]]
        assert listed == ([dataset["id"]] if caller in SEES_A else [])
    elif response.status_code == 200 and route == "content":
        assert body_of(response) == DIGITS
    elif response.status_code == 403:  # the role it lacks, or the token's scope
        detail = response.json()["detail"]
        assert ("scope" if "read-only" in caller else "role operator") in detail, detail
    elif response.status_code == 400:
        assert "team" in response.json()["fields"]
    elif response.status_code == 404:
        assert response.json()["code"] == "not_found"
    present = Dataset.objects.filter(pk=dataset["id"], deleted_at__isnull=True).exists()
    assert present is not (response.status_code == 204)
    new = Dataset.objects.exclude(pk=dataset["id"]).count()
    assert new == (1 if response.status_code == 201 else 0)
    assert len(objects(store)) == (0 if response.status_code == 204 else 1) + new


def test_a_viewer_is_refused_before_its_body_is_read(make_client, settings):
    app, api = make_client("watcher")
    TeamClient.objects.filter(application=app).update(role=Role.VIEWER)
    settings.DATASET_MAX_BYTES = 10  # the body is over it: still a 403, not a 413
    response = upload(api, b"x" * 100)
    assert response.status_code == 403
    assert "Upload needs the role operator" in response.json()["detail"]


def test_an_unknown_token_is_a_401_before_the_body_is_read(alice, settings):
    settings.DATASET_MAX_BYTES = 10  # were the body read, it would be a 413
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION="Bearer no-such-token")
    assert upload(stranger, b"x" * 100).status_code == 401
    assert upload(APIClient(), b"x" * 100).status_code == 401


def test_a_browser_session_uploads_with_its_csrf_token_in_the_header(django_user_model):
    user = django_user_model.objects.create_user("ada", password="x", is_staff=True)
    team_member_add(team_create(slug="lab"), user, Role.OPERATOR)
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    assert upload(browser).status_code == 403  # no CSRF token
    token = "a" * 32
    browser.cookies["csrftoken"] = token
    response = browser.post(DATASETS, {"file": SimpleUploadedFile("x.txt", b"x")},
                            format="multipart", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content
    assert response.json()["owner"] == "ada"


def test_a_client_in_several_teams_names_one(make_client):
    app, api = make_client("robot")
    lab = team_create(slug="lab")
    team_client_add(lab, app, Role.OPERATOR)
    refused(upload(api), 400, "team")
    assert uploaded(api, team="lab")["team"] == "lab"
    assert Dataset.objects.get().team == lab


def test_a_client_in_another_team_as_viewer_may_not_upload_there(make_client):
    app, api = make_client("robot")
    lab = team_create(slug="lab")
    team_client_add(lab, app, Role.VIEWER)
    response = upload(api, team="lab")
    assert response.status_code == 403
    assert "operator" in response.json()["detail"]
    assert uploaded(api)["team"] == "robot"  # its one team it uploads to


def test_an_unknown_id_or_no_id_at_all_is_a_404(alice):
    for path in (f"{uuid.uuid4()}/", "not-a-uuid/", f"{uuid.uuid4()}/content/"):
        assert alice.get(f"{DATASETS}{path}").status_code == 404
    assert alice.delete(f"{DATASETS}{uuid.uuid4()}/").status_code == 404


# --- delete --------------------------------------------------------------------------------------


def test_delete_removes_the_bytes_and_keeps_the_row_marked(alice, store):
    body = uploaded(alice)
    url = f"{DATASETS}{body['id']}/"
    assert alice.delete(url).status_code == 204
    assert objects(store) == []
    row = Dataset.objects.get(pk=body["id"])
    assert row.deleted_at is not None
    assert row.sha256 == body["sha256"]
    for answer in (alice.get(url), alice.get(f"{url}content/"), alice.delete(url)):
        assert answer.status_code == 404
    assert alice.get(DATASETS).json()["count"] == 0


def test_delete_is_a_409_while_a_live_process_uses_it(alice, pipelines, store):
    body = uploaded(alice)
    dataset = Dataset.objects.get(pk=body["id"])
    # Both name it in their config: the record of their use is what the delete reads.
    live = Process.objects.get(pk=alice.post(
        "/api/processes/", {"pipeline": "checksum", "used_config": {"input": body["id"]}},
        format="json").json()["id"])
    done, _ = process_create(pipeline="checksum", used_config={"input": body["id"]},
                             team=dataset.team)
    Process.objects.filter(pk=done.pk).update(state=State.SUCCEEDED)

    response = alice.delete(f"{DATASETS}{body['id']}/")
    assert response.status_code == 409, response.content
    answer = response.json()
    assert answer["code"] == "in_use"
    assert str(live.pk) in answer["detail"]
    assert str(done.pk) not in answer["detail"]
    assert objects(store) == [f"datasets/{body['id']}"]
    assert Dataset.objects.get(pk=body["id"]).deleted_at is None
    assert not AuditEntry.objects.filter(action=Action.DELETE).exists()

    Process.objects.filter(pk=live.pk).update(state=State.STOPPED)
    assert alice.delete(f"{DATASETS}{body['id']}/").status_code == 204
    assert set(Dataset.objects.get(pk=body["id"]).processes.all()) == {live, done}


# --- on an S3 store ------------------------------------------------------------------------------


@pytest.fixture
def s3_store(settings):
    """The API's store is a bucket of moto's S3 server (an emulator: no AWS here)."""
    from tests.test_storage import s3_serving
    from workers.storage.s3 import s3_client

    with s3_serving():
        client, bucket = s3_client(), f"orch-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        settings.DATA_STORAGE_URL = f"s3://{bucket}/orch"
        yield client, bucket


def test_the_api_keeps_datasets_in_an_s3_bucket(alice, s3_store):
    client, bucket = s3_store
    data = os.urandom(9 * 1024 * 1024 + 1)  # a multipart upload to S3

    def keys() -> list[str]:
        return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]

    body = uploaded(alice, data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert keys() == [f"orch/datasets/{body['id']}"]
    url = f"{DATASETS}{body['id']}/content/"
    assert body_of(alice.get(url)) == data
    part = alice.get(url, HTTP_RANGE="bytes=1000-1999")
    assert part.status_code == 206
    assert body_of(part) == data[1000:2000]
    assert alice.delete(f"{DATASETS}{body['id']}/").status_code == 204
    assert keys() == []
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_a_storage_url_that_names_no_store_fails_the_checks(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.DATA_STORAGE_URL = "ftp://files.example.org/datasets"
    with pytest.raises(SystemCheckError, match="ORCH_STORAGE_URL: a storage URL is"):
        call_command("check")


# --- the audit -----------------------------------------------------------------------------------


def test_upload_and_delete_are_audited_once_each(alice):
    body = uploaded(alice, name="reads")
    alice.delete(f"{DATASETS}{body['id']}/")
    entries = list(AuditEntry.objects.order_by("at", "id"))
    assert [(e.action, e.actor, e.team_slug, e.target) for e in entries] == [
        (Action.UPLOAD, "client:alice", "alice", f"dataset {body['id']}"),
        (Action.DELETE, "client:alice", "alice", f"dataset {body['id']}"),
    ]
    assert entries[0].detail == {"name": "reads", "size": 10, "sha256": body["sha256"]}
    assert entries[0].remote_addr == "127.0.0.1"


def test_a_refused_upload_is_not_audited(alice, settings):
    settings.DATASET_MAX_BYTES = 1
    upload(alice)
    assert not AuditEntry.objects.exists()


def test_a_failure_after_the_bytes_are_stored_keeps_neither(alice, store, monkeypatch):
    from apps.datasets import services

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "audit_record", broken)
    response = upload(alice)
    assert response.status_code == 500
    assert not Dataset.objects.exists()
    assert objects(store) == []


# --- the admin -----------------------------------------------------------------------------------


def test_the_admin_lists_the_callers_teams_datasets_read_only(client, django_user_model,
                                                               make_client):
    _, a_client = make_client("a")
    _, b_client = make_client("b")
    mine, theirs = uploaded(a_client, name="mine"), uploaded(b_client, name="theirs")
    gone = uploaded(a_client, name="gone")
    a_client.delete(f"{DATASETS}{gone['id']}/")
    user = django_user_model.objects.create_user("ada", password="x", is_staff=True)
    team_member_add(TeamClient.objects.get(application__name="a").team, user, Role.VIEWER)
    user.user_permissions.add(Permission.objects.get(codename="view_dataset"))
    client.force_login(user)

    page = client.get("/admin/datasets/dataset/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "mine" in html
    assert "gone" in html
    assert "theirs" not in html
    assert "/admin/datasets/dataset/add/" not in html
    detail = client.get(f"/admin/datasets/dataset/{mine['id']}/change/")
    assert detail.status_code == 200
    assert f"/api/datasets/{mine['id']}/content/" in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()
    assert client.get(f"/admin/datasets/dataset/{theirs['id']}/change/").status_code == 302
    assert client.post(f"/admin/datasets/dataset/{mine['id']}/delete/").status_code == 403


# --- through a real server -----------------------------------------------------------------------


@pytest.fixture
def server(transactional_db, tmp_path, store):
    """The web server as deploy/stack.sh starts it, on the test database, with this test's
    store and its own TMPDIR (where the uploads' temporary files go): (URL, the TMPDIR,
    its access log)."""
    from testbed import parts
    from testbed.services import free_port
    from tests.e2e.stack import database_url

    port = free_port()
    tmpdir = tmp_path / "server-tmp"
    tmpdir.mkdir()
    access = tmp_path / "access.log"
    env = {**os.environ, "DATABASE_URL": database_url(), "TMPDIR": str(tmpdir),
           "ORCH_STORAGE_URL": f"file://{store.root}"}
    web = parts.web(env, tmp_path, port, workers=1, threads=4, access_log=access).start()
    try:
        web.wait_ready(timeout=60)
        yield f"http://127.0.0.1:{port}", tmpdir, access
    finally:
        web.stop(timeout=30)


def multipart(boundary: str, data: bytes) -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"half.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + data + f"\r\n--{boundary}--\r\n".encode()


def send_and_hang_up(url: str, token: str, body: bytes, content_length: int,
                     midway=None) -> None:
    """POST ``body`` under a Content-Length promising ``content_length`` bytes, then close
    the connection: a client that went away."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall((f"POST {DATASETS} HTTP/1.1\r\nHost: {host}\r\n"
                      f"Authorization: Bearer {token}\r\n"
                      "Content-Type: multipart/form-data; boundary=cut\r\n"
                      f"Content-Length: {content_length}\r\n\r\n").encode())
        sock.sendall(body)
        if midway:
            midway()


def answered(access: Path, count: int) -> bool:
    return access.exists() and access.read_text().count(f"POST {DATASETS}") >= count


@pytest.mark.parametrize("whole_file_part", [False, True],
                         ids=["cut in the file", "file part whole, body cut"])
def test_an_upload_cut_short_leaves_nothing_behind(server, make_client, store, whole_file_part):
    from testbed.services import wait_until

    url, tmpdir, access = server
    make_client("alice")
    data = os.urandom(4 * 1024 * 1024)
    body = multipart("cut", data)
    if not whole_file_part:
        body = body[:len(body) // 2]
    seen = {}

    def while_sending():  # the server streams the part received so far into the store
        seen["partial"] = wait_until(lambda: partials(store), 30, "a partial object")

    send_and_hang_up(url, "token-alice-read-write", body, len(body) + 1000,
                     None if whole_file_part else while_sending)
    wait_until(lambda: answered(access, 1), 60, "the server to finish the request")
    if not whole_file_part:
        assert seen["partial"]  # the bytes were on their way...
    wait_until(lambda: not partials(store), 30, "the partial object to go")  # ...and gone
    assert list(tmpdir.iterdir()) == []
    assert not Dataset.objects.exists()
    assert objects(store) == []
    assert not AuditEntry.objects.exists()
    # and the server still serves
    answer = requests.post(f"{url}{DATASETS}", files={"file": ("ok.bin", data)},
                           headers={"Authorization": "Bearer token-alice-read-write"},
                           timeout=60)
    assert answer.status_code == 201, answer.text
    assert answer.json()["sha256"] == hashlib.sha256(data).hexdigest()


def test_curl_uploads_and_downloads_through_a_live_server(server, make_client, tmp_path):
    """The README's commands: curl -F file=@... then the download, whole and by range."""
    url, _, _ = server
    make_client("alice")
    source = tmp_path / "reads.fastq"
    source.write_bytes(os.urandom(5 * 1024 * 1024 + 11))
    auth = ["-H", "Authorization: Bearer token-alice-read-write"]
    done = subprocess.run(["curl", "-sS", "--fail-with-body", *auth, "-F", f"file=@{source}",
                           "-F", "description=run 7", f"{url}{DATASETS}"],
                          capture_output=True, check=True, timeout=120)
    body = json.loads(done.stdout)
    assert body["name"] == "reads.fastq"
    assert body["size"] == source.stat().st_size
    assert body["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    subprocess.run(["curl", "-sS", "--fail", *auth, "-OJ", f"{url}{DATASETS}{body['id']}/content/"],
                   cwd=downloads, check=True, timeout=120)
    assert (downloads / "reads.fastq").read_bytes() == source.read_bytes()
    part = subprocess.run(["curl", "-sS", "--fail", *auth, "-r", "100-199",
                           f"{url}{DATASETS}{body['id']}/content/"],
                          capture_output=True, check=True, timeout=60)
    assert part.stdout == source.read_bytes()[100:200]
