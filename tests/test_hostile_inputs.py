"""Hostile input on every writable route and query parameter: each is a 4xx in the one JSON
error shape, naming the field when there is one, creating nothing, and the server answers the
next request as before. An unexpected error is a JSON 500 with an error id that is in the log,
never a page showing the request's token or secrets."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
import requests

from apps.pipelines.models import PipelineVersion
from apps.processes.models import Process

pytestmark = pytest.mark.django_db

PROCESSES = "/api/processes/"
DEEP = 10_000


def nested(levels: int, leaf: str = "1") -> str:
    """JSON text of ``levels`` objects, one inside the other."""
    return '{"a":' * levels + leaf + "}" * levels


def deep_body(levels: int = DEEP) -> str:
    return '{"pipeline": "hello", "used_config": ' + nested(levels) + "}"


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: object = None
    kind: str = "json"  # json (a dict, encoded), raw (text as it is), form (urlencoded)
    status: int = 400
    field: str | None = None
    words: str = ""
    headers: dict = dataclasses.field(default_factory=dict)
    oauth: bool = False  # /o/token/ answers errors as OAuth2 defines them

    def __str__(self):
        return self.name


def json_case(name, body, field, words="", **kwargs):
    return Case(name, "post", PROCESSES, body, field=field, words=words, **kwargs)


def raw_case(name, text, field, words="", **kwargs):
    return Case(name, "post", PROCESSES, text, kind="raw", field=field, words=words, **kwargs)


def form_case(name, data, field, words="", **kwargs):
    return Case(name, "post", PROCESSES, data, kind="form", field=field, words=words, **kwargs)


def hello(**used_config):
    return {"pipeline": "hello", "used_config": used_config}


CASES = [
    # --- POST /api/processes/, JSON: depth, text the database cannot hold, sizes, types -------
    raw_case("json config 10,000 levels deep", deep_body(), "used_config", "32 levels"),
    raw_case("json config 33 levels deep", deep_body(33), "used_config", "32 levels"),
    raw_case("json pipeline 10,000 levels deep",
             '{"pipeline": ' + "[" * DEEP + "]" * DEEP + "}", "pipeline", "32 levels"),
    raw_case("json body 10,000 arrays deep", "[" * DEEP + "]" * DEEP, "body", "32 levels"),
    json_case("NUL in a config value", hello(name="Ada\0"), "used_config", "NUL"),
    json_case("NUL in a config key", hello(**{"na\0me": "Ada"}), "used_config", "NUL"),
    json_case("NUL deep in a config", hello(a={"b": ["x", "\0"]}), "used_config",
              "used_config.a.b.1: must not contain a NUL"),
    json_case("lone surrogate in a config value", hello(name="\ud800"), "used_config",
              "surrogate"),
    json_case("lone surrogate in a config key", hello(**{"\udfff": 1}), "used_config",
              "surrogate"),
    json_case("NUL in the pipeline name", {"pipeline": "hel\0lo"}, "pipeline", "Null"),
    json_case("lone surrogate in the pipeline name", {"pipeline": "hel\ud800lo"}, "pipeline",
              "Surrogate"),
    json_case("a huge pipeline name", {"pipeline": "p" * 200_000}, "pipeline", "100"),
    json_case("a config over the size limit", hello(name="Ada", blob="x" * 100_000),
              "used_config", "65536"),
    json_case("a huge array in a config", hello(items=[0] * 40_000), "used_config",
              "65536"),
    json_case("pipeline is a number", {"pipeline": 7}, "pipeline", "valid string"),
    json_case("pipeline is null", {"pipeline": None}, "pipeline", "null"),
    json_case("pipeline is a list", {"pipeline": ["hello"]}, "pipeline", "valid string"),
    json_case("pipeline is missing", {"used_config": {}}, "pipeline", "required"),
    json_case("used_config is a list", {"pipeline": "hello", "used_config": [1]},
              "used_config", "JSON object"),
    json_case("used_config is a number", {"pipeline": "hello", "used_config": 5},
              "used_config", "JSON object"),
    json_case("used_config is not JSON", {"pipeline": "hello", "used_config": "{no"},
              "used_config", "Not valid JSON"),
    raw_case("a number out of range (1e999)",
             '{"pipeline": "hello", "used_config": {"n": 1e999}}', "used_config",
             "out of range"),
    raw_case("NaN in the body", '{"pipeline": "hello", "used_config": {"n": NaN}}', "body"),
    raw_case("an integer of 5,000 digits", '{"pipeline": "hello", "used_config": {"n": '
             + "9" * 5000 + "}}", "body"),
    json_case("a config breaking the schema", {"pipeline": "sleep",
                                               "used_config": {"seconds": "ten"}},
              "used_config", "'ten' is not of type 'integer'"),
    json_case("an unknown field", {"pipeline": "hello", "config": {}}, "config",
              "Unknown field"),
    json_case("an unknown field named like the error shape", {"pipeline": "hello",
                                                              "status": "x"}, "status"),
    json_case("an unknown field with a NUL in its name", {"pipeline": "hello", "a\0": 1},
              "a\0", "Unknown field"),
    json_case("version is a word", {"pipeline": "hello", "version": "two"}, "version"),
    json_case("version is negative", {"pipeline": "hello", "version": -1}, "version"),
    json_case("version is zero", {"pipeline": "hello", "version": 0}, "version"),
    json_case("version is out of range", {"pipeline": "hello", "version": 10**30}, "version"),
    json_case("version is a fraction", {"pipeline": "hello", "version": 1.5}, "version"),
    json_case("version is true", {"pipeline": "hello", "version": True}, "version"),
    json_case("version that does not exist", {"pipeline": "hello", "version": 99}, "version"),
    json_case("an unknown pipeline", {"pipeline": "nope"}, "pipeline", "Unknown pipeline"),
    json_case("an Idempotency-Key of 400 characters", hello(), "Idempotency-Key", "200",
              headers={"HTTP_IDEMPOTENCY_KEY": "k" * 400}),
    json_case("an Idempotency-Key with a control character", hello(), "Idempotency-Key",
              "control", headers={"HTTP_IDEMPOTENCY_KEY": "order\x01-42"}),
    json_case("an Idempotency-Key that is not ASCII", hello(), "Idempotency-Key",
              headers={"HTTP_IDEMPOTENCY_KEY": "ordre-\u00e9"}),
    json_case("secrets with a NUL in a name", {"pipeline": "hello", "secrets": {"A\0": "v"}},
              "secrets", "NUL"),
    json_case("secrets with a lone surrogate", {"pipeline": "hello",
                                                "secrets": {"API_TOKEN": "\ud800"}},
              "secrets", "surrogate"),
    json_case("secrets as a list", {"pipeline": "hello", "secrets": ["v"]}, "secrets"),
    raw_case("a body that is not JSON", "{oops", "body", "Not valid JSON"),
    raw_case("a body that is a JSON list", "[]", "non_field_errors"),
    raw_case("a body that is JSON null", "null", "non_field_errors"),
    Case("a body that is not UTF-8", "post", PROCESSES, b'{"pipeline": "\xff\xfe"}',
         kind="raw", field="body"),
    Case("a body of an unsupported type", "post", PROCESSES, "pipeline=hello", kind="raw",
         headers={"content_type": "text/plain"}, status=415),
    Case("PUT on the list", "put", PROCESSES, {}, status=405),
    # --- POST /api/processes/, form-encoded (curl -d) ------------------------------------------
    form_case("form config 10,000 levels deep", {"pipeline": "hello",
                                                  "used_config": nested(DEEP)},
              "used_config", "32 levels"),
    form_case("form config 33 levels deep", {"pipeline": "hello", "used_config": nested(33)},
              "used_config", "32 levels"),
    form_case("form NUL in the pipeline name", {"pipeline": "hel\0lo"}, "pipeline", "Null"),
    form_case("form NUL escaped in a config", {"pipeline": "hello",
                                               "used_config": '{"name": "a\\u0000"}'},
              "used_config", "NUL"),
    form_case("form lone surrogate escaped in a config",
              {"pipeline": "hello", "used_config": '{"name": "\\ud800"}'},
              "used_config", "surrogate"),
    form_case("form NaN in a config", {"pipeline": "hello", "used_config": '{"n": NaN}'},
              "used_config", "NaN"),
    form_case("form integer of 5,000 digits", {"pipeline": "hello",
                                               "used_config": '{"n": ' + "9" * 5000 + "}"},
              "used_config", "Not valid JSON"),
    form_case("form version is a word", {"pipeline": "hello", "version": "two"}, "version"),
    # --- POST /api/processes/<id>/stop/ and reading one process --------------------------------
    Case("stop: an id that is not a UUID", "post", f"{PROCESSES}42/stop/", status=404),
    Case("stop: an unknown UUID", "post",
         f"{PROCESSES}00000000-0000-0000-0000-000000000000/stop/", status=404),
    Case("stop: an id of 10,000 characters", "post", f"{PROCESSES}{'9' * 10_000}/stop/",
         status=404),
    Case("stop: a NUL in the id", "post", f"{PROCESSES}%00/stop/", field="url"),
    Case("stop: GET instead of POST", "get", f"{PROCESSES}{{pid}}/stop/", status=405),
    # --- GET /api/processes/ filters and pages -------------------------------------------------
    Case("list: state=NOPE", "get", f"{PROCESSES}?state=NOPE", field="state"),
    Case("list: created_after=garbage", "get", f"{PROCESSES}?created_after=garbage",
         field="created_after"),
    Case("list: created_before out of range", "get", f"{PROCESSES}?created_before=99999-01-01",
         field="created_before"),
    Case("list: finished_after=10^30", "get", f"{PROCESSES}?finished_after={10**30}",
         field="finished_after"),
    Case("list: page=-1", "get", f"{PROCESSES}?page=-1", field="page"),
    Case("list: page=abc", "get", f"{PROCESSES}?page=abc", field="page"),
    Case("list: page=10^30", "get", f"{PROCESSES}?page={10**30}", field="page"),
    Case("list: page_size=10^9", "get", f"{PROCESSES}?page_size={10**9}", field="page_size"),
    Case("list: page_size=0", "get", f"{PROCESSES}?page_size=0", field="page_size"),
    Case("list: pipeline=NUL", "get", f"{PROCESSES}?pipeline=%00", field="url"),
    # --- GET /api/processes/<id>/logs/ ---------------------------------------------------------
    Case("logs: offset=-1", "get", f"{PROCESSES}{{pid}}/logs/?offset=-1", field="offset"),
    Case("logs: offset=10^30", "get", f"{PROCESSES}{{pid}}/logs/?offset={10**30}",
         field="offset"),
    Case("logs: offset=abc", "get", f"{PROCESSES}{{pid}}/logs/?offset=abc", field="offset"),
    Case("logs: offset twice", "get", f"{PROCESSES}{{pid}}/logs/?offset=1&offset=2",
         field="offset"),
    # --- GET /api/pipelines/<name>/ ------------------------------------------------------------
    Case("pipeline: an unknown name", "get", "/api/pipelines/nope/", status=404),
    Case("pipeline: a NUL in the name", "get", "/api/pipelines/he%00llo/", field="url"),
    Case("pipeline: a name of 10,000 characters", "get", f"/api/pipelines/{'p' * 10_000}/",
         status=404),
    Case("pipeline: broken UTF-8 in the name", "get", "/api/pipelines/%ED%A0%80/", status=404),
    # --- POST /o/token/ ------------------------------------------------------------------------
    Case("token: an empty body", "post", "/o/token/", {}, kind="form", status=400, oauth=True),
    Case("token: an unknown grant", "post", "/o/token/", {"grant_type": "password"},
         kind="form", status=400, oauth=True),
    Case("token: garbage bytes", "post", "/o/token/", b"\xff\x00\xfe=\x01", kind="raw",
         headers={"content_type": "application/x-www-form-urlencoded"}, status=400,
         oauth=True),
    Case("token: a NUL in the client id", "post", "/o/token/",
         {"grant_type": "client_credentials", "client_id": "a\0", "client_secret": "s"},
         kind="form", status=401, oauth=True),
    # --- anywhere ------------------------------------------------------------------------------
    Case("a path outside the API", "get", "/no/such/page/", status=404),
]


@pytest.fixture
def pid(api):
    """A process of this client, for the routes under /api/processes/<id>/."""
    return api.post(PROCESSES, {"pipeline": "hello"}, format="json").json()["id"]


def send(api, case: Case, pid: str):
    path = case.path.replace("{pid}", pid)
    headers = dict(case.headers)
    content_type = headers.pop("content_type", None)
    call = getattr(api, case.method)
    if case.kind == "json" and case.body is not None:
        return call(path, json.dumps(case.body), content_type="application/json", **headers)
    if case.kind == "form":
        return call(path, urlencode(case.body), **headers,
                    content_type="application/x-www-form-urlencoded")
    if case.kind == "raw":
        return call(path, case.body, content_type=content_type or "application/json",
                    **headers)
    return call(path, **headers)


def test_the_table_covers_forty_hostile_inputs():
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_input_is_a_4xx_in_the_error_shape_and_changes_nothing(api, pid, case):
    before = Process.objects.count()
    response = send(api, case, pid)
    assert response.status_code == case.status, response.content[:2000]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    if case.oauth:
        assert body["error"], body
    else:
        assert body["status"] == case.status, body
        assert body["code"], body
        assert body["detail"], body
        assert "error_id" not in body
    if case.field:
        assert case.field in body["fields"], body
        assert case.words in " ".join(map(str, body["fields"][case.field])), body
    assert Process.objects.count() == before
    assert api.get(PROCESSES).status_code == 200  # still answering


def test_a_field_keeps_its_messages_at_the_top_level_too(api):
    response = api.post(PROCESSES, {"pipeline": "sleep", "used_config": {"seconds": "ten"}},
                        format="json")
    body = response.json()
    assert body["used_config"] == body["fields"]["used_config"]
    assert body["detail"] == "used_config.seconds: 'ten' is not of type 'integer'"
    assert body["code"] == "invalid"


def test_a_config_at_the_depth_limit_is_taken(api):
    response = api.post(PROCESSES, deep_body(31), content_type="application/json")
    assert response.status_code == 201, response.content[:500]


# --- unexpected errors --------------------------------------------------------------------------

TOKEN = "token-alice-read-write"  # conftest's make_client("alice")
SECRET = "s3cret-value-never-shown"


@pytest.fixture
def crash(monkeypatch):
    """Make process creation fail the way a bug would, after the secrets were read."""

    def broken(**kwargs):
        raise RuntimeError("something broke inside")

    monkeypatch.setattr("apps.processes.views.process_create", broken)


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_error_is_a_json_500_with_an_id_in_the_log(
        api, crash, caplog, settings, debug):
    settings.DEBUG = debug  # a setting a production user might keep: no debug page either way
    caplog.set_level(logging.ERROR, logger="orchestration.errors")
    response = api.post(PROCESSES, {"pipeline": "hello", "secrets": {"API_TOKEN": SECRET}},
                        format="json")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "server_error"
    assert body["status"] == 500
    assert body["error_id"] in caplog.text
    assert "something broke inside" in caplog.text
    text = response.content.decode()
    assert TOKEN not in text
    assert SECRET not in text
    assert "Traceback" not in text


def test_an_error_in_a_plain_django_view_is_json_too(client, django_user_model, monkeypatch,
                                                    caplog, settings):
    settings.DEBUG = True
    admin = django_user_model.objects.create(username="admin", is_staff=True,
                                             is_superuser=True)
    client.force_login(admin)

    def broken(*args, **kwargs):
        raise RuntimeError("the admin broke")

    monkeypatch.setattr("django.contrib.admin.sites.AdminSite.get_app_list", broken)
    response = client.get("/admin/", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 500
    body = response.json()
    assert body["error_id"] in caplog.text
    assert TOKEN not in response.content.decode()


def test_an_unknown_path_is_a_json_404_even_with_debug(client, settings):
    settings.DEBUG = True
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_error_reports_hide_the_token_and_the_secrets(api, monkeypatch):
    """Django's error report (what DEBUG's page or a mailed report would show) of an error
    inside process_create: no frame shows the secret, and the request shows no token."""
    from django.views.debug import ExceptionReporter

    import apps.accounts.errors as errors

    caught = {}

    def seal(values, **bound_to):  # its frame holds the secrets
        raise RuntimeError("sealing failed")

    def remember(request, exc_info=None):
        caught["report"] = ExceptionReporter(request._request, *exc_info).get_traceback_html()
        return "id"

    monkeypatch.setattr("apps.processes.services.seal", seal)
    monkeypatch.setattr(errors, "log_unexpected", remember)
    PipelineVersion.objects.filter(pipeline__name="hello").update(secrets=["API_TOKEN"])
    response = api.post(PROCESSES, {"pipeline": "hello", "secrets": {"API_TOKEN": SECRET}},
                        format="json")
    assert response.status_code == 500
    report = caught["report"]
    assert "sealing failed" in report
    assert SECRET not in report
    assert TOKEN not in report


# --- against a real server: what `requests` reads --------------------------------------------


@pytest.fixture
def gunicorn(transactional_db, tmp_path):
    """The web server as deploy/stack.sh starts it, on the test database, on a free port.
    (Django's live_server reads every body to its end itself, so it would hide the bug.)"""
    from testbed import parts
    from testbed.services import free_port
    from tests.e2e.stack import database_url

    port = free_port()
    server = parts.web({**os.environ, "DATABASE_URL": database_url()}, tmp_path, port,
                       workers=1, threads=4).start()
    try:
        server.wait_ready(timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop(timeout=30)


def test_a_2_mib_body_gets_a_readable_json_413(gunicorn, make_client, pipelines):
    make_client("alice")
    response = requests.post(
        f"{gunicorn}{PROCESSES}", data=b'{"pipeline": "' + b"x" * (2 * 1024 * 1024)
        + b'"}', headers={"Authorization": f"Bearer {TOKEN}",
                          "Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "too_large"
    assert "262144" in body["detail"]
    assert "body" in body["fields"]
    assert Process.objects.count() == 0
    after = requests.get(f"{gunicorn}{PROCESSES}",
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert after.status_code == 200


@pytest.mark.parametrize("body", [
    deep_body(),
    json.dumps(hello(name="Ada\0")),
    json.dumps(hello(name="\ud800")),
], ids=["10,000 levels", "NUL", "lone surrogate"])
def test_the_issues_inputs_are_400s_from_a_real_server(gunicorn, make_client, pipelines,
                                                        body):
    make_client("alice")
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    response = requests.post(f"{gunicorn}{PROCESSES}", data=body.encode(),
                             headers=headers, timeout=30)
    assert response.status_code == 400, response.text[:500]
    assert "used_config" in response.json()["fields"]
    assert Process.objects.count() == 0
