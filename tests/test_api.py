"""The REST API as a client program uses it: create, read, filter, stop, and every way of
getting it wrong answered with a 400 that names the field and creates nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from apps.processes.models import Process
from workers.contract import State

pytestmark = pytest.mark.django_db

PROCESSES = "/api/processes/"


def create(api, **body):
    return api.post(PROCESSES, body, format="json")


# --- creating -----------------------------------------------------------------------------------


def test_json_post_creates_a_process_with_defaults_merged(api):
    response = create(api, pipeline="sleep", used_config={"seconds": 3})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["state"] in (State.PENDING, State.QUEUED)
    assert body["pipeline"] == "sleep"
    assert body["pipeline_version"] == 1
    process = Process.objects.get(pk=body["id"])
    assert process.used_config == {"seconds": 3}

    response = create(api, pipeline="hello", used_config={})
    assert Process.objects.get(pk=response.json()["id"]).used_config == {"name": "world"}


def test_form_encoded_post_as_seed_users_send_it(api):
    response = api.post(PROCESSES, "pipeline=hello&used_config=",
                        content_type="application/x-www-form-urlencoded")
    assert response.status_code == 201, response.content
    assert response.json()["used_config"] == {"name": "world"}

    response = api.post(PROCESSES, {"pipeline": "hello", "used_config": '{"name": "Ada"}'})
    assert response.status_code == 201, response.content
    assert response.json()["used_config"] == {"name": "Ada"}


def test_idempotency_key_returns_the_first_process(api):
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-42"}
    first = api.post(PROCESSES, {"pipeline": "hello"}, format="json", **headers)
    again = api.post(PROCESSES, {"pipeline": "hello"}, format="json", **headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert Process.objects.count() == 1
    other = api.post(PROCESSES, {"pipeline": "hello"}, format="json",
                     HTTP_IDEMPOTENCY_KEY="order-43")
    assert other.json()["id"] != first.json()["id"]


def test_the_same_idempotency_key_of_two_clients_gives_two_processes(make_client, pipelines):
    _, alice = make_client("alice")
    _, bob = make_client("bob")
    a = alice.post(PROCESSES, {"pipeline": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    b = bob.post(PROCESSES, {"pipeline": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert a.json()["id"] != b.json()["id"]


def test_a_pinned_version_is_used(api):
    response = create(api, pipeline="hello", version=1)
    assert response.status_code == 201
    response = create(api, pipeline="hello", version=9)
    assert response.status_code == 400
    assert "version" in response.json()


# --- refusing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"pipeline": "nope"}, "pipeline", "Unknown pipeline 'nope'"),
        ({"used_config": {}}, "pipeline", "required"),
        ({"pipeline": 7}, "pipeline", "valid string"),
        ({"pipeline": "sleep", "used_config": {"seconds": "ten"}}, "used_config",
         "used_config.seconds: 'ten' is not of type 'integer'"),
        ({"pipeline": "sleep", "used_config": {"seconds": -1}}, "used_config",
         "used_config.seconds"),
        ({"pipeline": "sleep", "used_config": {"sec": 1}}, "used_config", "'sec'"),
        ({"pipeline": "hello", "used_config": [1, 2]}, "used_config", "JSON object"),
        ({"pipeline": "hello", "used_config": "{not json"}, "used_config", "Not valid JSON"),
        ({"pipeline": "hello", "config": {}}, "config", "Unknown field"),
        ({"pipeline": "hello", "version": "two"}, "version", "valid integer"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_creates_nothing(api, body, field, words):
    response = create(api, **body)
    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors, errors
    assert words in " ".join(map(str, errors[field])), errors
    assert Process.objects.count() == 0


def test_a_body_that_is_not_json_is_a_400(api):
    response = api.post(PROCESSES, "{oops", content_type="application/json")
    assert response.status_code == 400
    assert "body" in response.json()
    assert Process.objects.count() == 0


def test_a_body_over_the_limit_is_a_413(api, settings):
    big = {"pipeline": "hello", "used_config": {"name": "x" * (settings.MAX_REQUEST_BODY_BYTES)}}
    response = api.post(PROCESSES, json.dumps(big), content_type="application/json")
    assert response.status_code == 413
    assert "limit" in response.json()["body"][0]
    assert Process.objects.count() == 0


def test_a_bad_filter_value_is_a_400_naming_it(api):
    response = api.get(PROCESSES, {"created_after": "yesterday"})
    assert response.status_code == 400
    assert "created_after" in response.json()
    response = api.get(PROCESSES, {"state": "DONE"})
    assert response.status_code == 400
    assert "state" in response.json()


# --- who sees what ------------------------------------------------------------------------------


def test_no_token_is_a_401(pipelines, client):
    response = client.post(PROCESSES, {"pipeline": "hello"})
    assert response.status_code == 401
    assert Process.objects.count() == 0
    assert client.get(PROCESSES).status_code == 401


def test_a_bad_token_is_a_401(pipelines, client):
    response = client.get(PROCESSES, HTTP_AUTHORIZATION="Bearer not-a-token")
    assert response.status_code == 401


def test_a_read_only_token_cannot_create_or_stop(make_client, pipelines):
    app, writer = make_client("robot")
    pid = create(writer, pipeline="sleep").json()["id"]
    read_only = AccessToken.objects.create(
        application=app, token="read-only", scope="read",
        expires=timezone.now() + timedelta(hours=1),
    )
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {read_only.token}")
    assert reader.get(f"{PROCESSES}{pid}/status/").status_code == 200
    assert reader.post(PROCESSES, {"pipeline": "hello"}, format="json").status_code == 403
    assert reader.post(f"{PROCESSES}{pid}/stop/").status_code == 403
    assert Process.objects.count() == 1
    assert Process.objects.get(pk=pid).state != State.STOPPED


def test_a_token_without_read_scope_cannot_list(make_client, pipelines):
    _, writer_only = make_client("w", scope="write")
    assert writer_only.get(PROCESSES).status_code == 403


def test_another_teams_process_is_a_404_even_for_staff_and_a_superuser_sees_all(
        make_client, pipelines, client, admin_user):
    _, alice = make_client("alice")
    _, bob = make_client("bob")
    _, ops = make_client("ops", staff=True)  # sees workers and health, no team's processes
    client.force_login(admin_user)  # a superuser
    pid = create(alice, pipeline="hello").json()["id"]
    for path in ("", "status/", "events/", "logs/"):
        assert bob.get(f"{PROCESSES}{pid}/{path}").status_code == 404
        assert ops.get(f"{PROCESSES}{pid}/{path}").status_code == 404
        assert alice.get(f"{PROCESSES}{pid}/{path}").status_code == 200
        assert client.get(f"{PROCESSES}{pid}/{path}").status_code == 200
    assert bob.post(f"{PROCESSES}{pid}/stop/").status_code == 404
    assert Process.objects.get(pk=pid).state != State.STOPPED
    assert bob.get(PROCESSES).json()["count"] == 0
    assert ops.get(PROCESSES).json()["count"] == 0
    assert alice.get(PROCESSES).json()["count"] == 1
    assert client.get(PROCESSES).json()["count"] == 1


def test_an_id_that_is_not_a_uuid_is_a_404(api):
    assert api.get(f"{PROCESSES}42/status/").status_code == 404


# --- reading ------------------------------------------------------------------------------------


def test_list_filters_by_state_pipeline_and_time(api):
    hello = create(api, pipeline="hello").json()["id"]
    create(api, pipeline="sleep")
    Process.objects.filter(pk=hello).update(state=State.SUCCEEDED)
    assert api.get(PROCESSES, {"pipeline": "hello"}).json()["count"] == 1
    assert api.get(PROCESSES, {"state": "SUCCEEDED"}).json()["results"][0]["id"] == hello
    both = api.get(PROCESSES + "?state=SUCCEEDED&state=PENDING&state=QUEUED").json()
    assert both["count"] == 2
    assert api.get(PROCESSES, {"created_after": "2999-01-01T00:00:00Z"}).json()["count"] == 0


def test_status_events_and_stop_of_a_process_not_yet_submitted(api):
    pid = create(api, pipeline="sleep").json()["id"]
    status = api.get(f"{PROCESSES}{pid}/status/").json()
    assert status["state"] in ("PENDING", "QUEUED")
    assert status["finished"] is False

    assert api.get(f"{PROCESSES}{pid}/stop/").status_code == 405
    stopped = api.post(f"{PROCESSES}{pid}/stop/")
    assert stopped.status_code == 200
    assert stopped.json()["state"] == "STOPPED"
    again = api.post(f"{PROCESSES}{pid}/stop/")
    assert again.status_code == 200
    assert again.json()["state"] == "STOPPED"

    events = api.get(f"{PROCESSES}{pid}/events/").json()
    assert events[0]["to"] == "PENDING"
    assert events[0]["from"] is None
    assert events[-1]["to"] == "STOPPED"
    assert [e["to"] for e in events].count("STOPPED") == 1


def test_stop_of_a_finished_process_changes_nothing(api):
    pid = create(api, pipeline="hello").json()["id"]
    Process.objects.filter(pk=pid).update(state=State.SUCCEEDED, exit_code=0)
    response = api.post(f"{PROCESSES}{pid}/stop/")
    assert response.json()["state"] == "SUCCEEDED"
    assert Process.objects.get(pk=pid).state == State.SUCCEEDED


def test_pipelines_list_and_detail(api):
    names = [p["name"] for p in api.get("/api/pipelines/").json()]
    assert {"hello", "sleep", "fail", "checksum"} <= set(names)
    hello = api.get("/api/pipelines/hello/").json()
    assert hello["defaults"] == {"name": "world"}
    assert hello["config_schema"]["properties"]["name"]["type"] == "string"
    assert hello["versions"][0]["number"] == 1
    assert api.get("/api/pipelines/nope/").status_code == 404


def test_health_needs_no_token_and_reports_database_and_broker(client, db):
    from apps.pipelines.models import ServiceHeartbeat
    from apps.pipelines.services import service_heartbeat

    service_heartbeat(ServiceHeartbeat.CONTROL)  # tests/test_health.py: when they are not
    service_heartbeat(ServiceHeartbeat.BEAT)
    response = client.get("/api/health/")
    body = response.json()
    assert body["database"]["ok"] is True
    assert "broker" in body
    assert "pools" in body
    assert response.status_code == (200 if body["broker"]["ok"] else 503)


def test_client_credentials_token_endpoint(db, client, pipelines):
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("create_client", "robot", "--format", "json", stdout=out)
    creds = json.loads(out.getvalue())
    import base64

    basic = base64.b64encode(f"{creds['client_id']}:{creds['client_secret']}".encode()).decode()
    token = client.post("/o/token/", {"grant_type": "client_credentials"},
                        HTTP_AUTHORIZATION=f"Basic {basic}").json()
    assert token["token_type"] == "Bearer"
    assert set(token["scope"].split()) == {"read", "write"}
    response = client.post(PROCESSES, {"pipeline": "hello"},
                           HTTP_AUTHORIZATION=f"Bearer {token['access_token']}")
    assert response.status_code == 201
    assert response.json()["owner"] == "client-robot"
    ro = client.post("/o/token/", {"grant_type": "client_credentials", "scope": "read"},
                     HTTP_AUTHORIZATION=f"Basic {basic}").json()
    denied = client.post(PROCESSES, {"pipeline": "hello"},
                         HTTP_AUTHORIZATION=f"Bearer {ro['access_token']}")
    assert denied.status_code == 403


def test_two_workers_of_one_pool_on_one_host_show_as_two(make_client, pipelines):
    from apps.pipelines.services import worker_heartbeat
    from workers.contract import Heartbeat

    api = make_client("ops", staff=True)[1]  # workers' names and hosts are for staff

    def beat(name: str, busy: int) -> None:
        worker_heartbeat(Heartbeat(pool="local", host="node1", target="local", version="1",
                                   capacity=4, busy=busy, name=f"{name}@node1"))

    beat("local", 1)
    beat("local-2", 3)
    beat("local", 2)  # the same worker again: its row is updated, not doubled
    local = next(p for p in api.get("/api/pools/").json() if p["name"] == "local")
    assert local["status"] == "up"
    assert sorted((w["name"], w["busy"]) for w in local["workers"]) == [
        ("local-2@node1", 3), ("local@node1", 2)]
    assert local["busy"] == 5
    health = api.get("/api/health/").json()
    assert health["pools"]["local"]["workers"] == 2


def test_a_reused_idempotency_key_with_another_body_is_refused_and_creates_nothing(api):
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-44"}
    first = api.post(PROCESSES, {"pipeline": "hello", "used_config": {"name": "Ada"}},
                     format="json", **headers)
    assert first.status_code == 201, first.content
    # the same request again, its config spelled with the defaults filled in: a replay
    same = api.post(PROCESSES, {"pipeline": "hello", "used_config": {"name": "Ada"}},
                    format="json", **headers)
    assert same.status_code == 201
    assert same["Idempotent-Replayed"] == "true"

    for body in ({"pipeline": "hello", "used_config": {"name": "Grace"}},
                 {"pipeline": "sleep", "used_config": {"seconds": 1}},
                 {"pipeline": "hello", "used_config": {"name": "Ada"}, "version": 99}):
        other = api.post(PROCESSES, body, format="json", **headers)
        assert other.status_code == 422, (body, other.content)
        message = other.json()["Idempotency-Key"][0]
        assert first.json()["id"] in message
    assert Process.objects.count() == 1


@pytest.mark.parametrize("path", ["/api/processes/?id_prefix=", "/api/processes/?state=",
                                  "/api/deliveries/?process=", "/api/deliveries/?state=",
                                  "/api/deliveries/?webhook=",
                                  "/api/processes/{pid}/logs/?offset="])
def test_a_filter_given_empty_is_a_400_naming_it_not_no_filter(api, path):
    """Left out, a filter filters nothing; given with no value it is a mistake to say so."""
    pid = api.post("/api/processes/", {"pipeline": "hello"}, format="json").json()["id"]
    answer = api.get(path.format(pid=pid))
    assert answer.status_code == 400, answer.content
    name = path.rsplit("?", 1)[1].rstrip("=")
    assert name in answer.json()["fields"]
