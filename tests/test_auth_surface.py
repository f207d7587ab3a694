"""What an attacker found, closed: only the token and revoke routes of django-oauth-toolkit,
tokens from the Authorization header only, no client-id enumeration by timing, failed client
authentications and API calls throttled, no details for strangers in health and pools, and
``create_client`` never adopting an existing user."""

from __future__ import annotations

import base64
import io
import json
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from oauth2_provider.models import AccessToken, Application

from apps.pipelines.services import worker_heartbeat
from apps.processes.models import Process
from apps.processes.services import process_create
from workers.contract import Heartbeat

pytestmark = pytest.mark.django_db

TOKEN = "/o/token/"
PROCESSES = "/api/processes/"


def new_client(name: str) -> dict:
    out = io.StringIO()
    call_command("create_client", name, "--format", "json", stdout=out)
    return json.loads(out.getvalue())


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def ask_token(client, client_id, secret, address="127.0.0.1"):
    return client.post(TOKEN, {"grant_type": "client_credentials"},
                       HTTP_AUTHORIZATION=basic(client_id, secret), REMOTE_ADDR=address)


# --- routes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/o/applications/", "/o/applications/register/",
                                  "/o/introspect/", "/o/userinfo/", "/o/.well-known/jwks.json",
                                  "/o/.well-known/openid-configuration", "/o/authorize/",
                                  "/o/authorized_tokens/"])
def test_unused_oauth_routes_are_not_mounted(client, admin_user, path):
    client.force_login(admin_user)  # not even for a staff session
    assert client.get(path).status_code == 404
    assert client.post(path, {}).status_code == 404


def test_a_token_is_granted_for_an_hour_and_can_be_revoked(client):
    creds = new_client("robot")
    answer = ask_token(client, creds["client_id"], creds["client_secret"])
    token = answer.json()
    assert answer.status_code == 200
    assert 0 < token["expires_in"] <= 3600
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token['access_token']}"}
    assert client.get(PROCESSES, **bearer).status_code == 200
    revoked = client.post("/o/revoke_token/", {"token": token["access_token"]},
                          HTTP_AUTHORIZATION=basic(creds["client_id"], creds["client_secret"]))
    assert revoked.status_code == 200
    assert client.get(PROCESSES, **bearer).status_code == 401


def test_the_device_grant_is_refused_not_a_500(client):
    answer = client.post(TOKEN, {"grant_type": "urn:ietf:params:oauth:grant-type:device_code"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "unsupported_grant_type"


# --- bearer tokens: the header only -------------------------------------------------------------

@pytest.fixture
def token(make_client, pipelines) -> str:
    app, _ = make_client("alice")
    return AccessToken.objects.get(application=app).token


def test_a_token_in_the_query_string_is_refused(client, token):
    assert client.get(f"{PROCESSES}?access_token={token}").status_code == 401
    assert client.get(PROCESSES, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_a_token_in_a_form_body_is_refused(client, token):
    answer = client.post(PROCESSES, {"access_token": token, "pipeline": "hello"})
    assert answer.status_code == 401
    assert not Process.objects.exists()


# --- the token endpoint: even time, throttled failures -----------------------------------------

def median_times(*calls, repeat: int = 5) -> list[float]:
    """The median time of each call, the calls taken in turn so that a machine busy for a
    moment slows them alike."""
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeat):
        for call, taken in zip(calls, times, strict=True):
            start = time.perf_counter()
            call()
            taken.append(time.perf_counter() - start)
    return [sorted(taken)[repeat // 2] for taken in times]


def test_an_unknown_client_id_costs_as_much_as_a_wrong_secret(client, settings):
    settings.TOKEN_FAILURE_LIMIT = 100  # this test counts time, not failures
    creds = new_client("robot")
    wrong_secret, unknown_id = median_times(
        lambda: ask_token(client, creds["client_id"], "wrong"),
        lambda: ask_token(client, "no-such-client-id", "wrong"))
    # Before: about 0.2 s against 4 ms. Now both hash a secret.
    assert unknown_id > 0.5 * wrong_secret, (unknown_id, wrong_secret)


@pytest.fixture
def limit_3(settings):
    settings.TOKEN_FAILURE_LIMIT = 3
    settings.TOKEN_FAILURE_WINDOW_S = 3600  # no window ends during the test
    return 3


def test_wrong_secrets_for_one_client_id_are_throttled(client, limit_3):
    victim, good = new_client("victim"), new_client("good")
    for n in range(limit_3):  # from several addresses: the id is what counts here
        assert ask_token(client, victim["client_id"], "guess", f"10.0.0.{n}").status_code == 401
    refused = ask_token(client, victim["client_id"], "guess", "10.0.0.9")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "too_many_requests" in refused.json()["error"]
    # Another client elsewhere still gets its tokens.
    assert ask_token(client, good["client_id"], good["client_secret"], "10.0.1.1").status_code \
        == 200


def test_wrong_secrets_at_revoke_count_too(client, limit_3):
    victim = new_client("victim")
    for _ in range(limit_3):
        answer = client.post("/o/revoke_token/", {"token": "anything"},
                             HTTP_AUTHORIZATION=basic(victim["client_id"], "guess"))
        assert answer.status_code == 401
    assert ask_token(client, victim["client_id"], "guess", "10.0.0.5").status_code == 429


def test_failures_from_one_address_are_throttled(client, limit_3):
    good = new_client("good")
    for n in range(limit_3):  # a different unknown id each time: the address is what counts
        assert ask_token(client, f"guess-{n}", "guess", "10.0.0.7").status_code == 401
    refused = ask_token(client, good["client_id"], good["client_secret"], "10.0.0.7")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert ask_token(client, good["client_id"], good["client_secret"], "10.0.0.8").status_code \
        == 200


# --- the API: per client rates ------------------------------------------------------------------

def test_api_calls_over_the_rate_are_429_with_retry_after(make_client, pipelines, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"read": "3/d", "write": "1/d"}}
    _, alice = make_client("alice")
    _, bob = make_client("bob")
    assert [alice.get(PROCESSES).status_code for _ in range(3)] == [200] * 3
    refused = alice.get(PROCESSES)
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert bob.get(PROCESSES).status_code == 200  # another client has its own count
    body = {"pipeline": "hello", "used_config": {}}
    assert alice.post(PROCESSES, body, format="json").status_code == 201  # write: its own rate
    assert alice.post(PROCESSES, body, format="json").status_code == 429


# --- health and pools: details for staff --------------------------------------------------------

def test_health_tells_strangers_unavailable_and_staff_why(client, admin_user, monkeypatch, db):
    error = "connection to amqp://orch:s3cret@10.1.2.3:5672 refused"
    monkeypatch.setattr("apps.processes.health.broker_ok", lambda: (False, error))
    anonymous = client.get("/api/health/")
    assert anonymous.status_code == 503
    assert anonymous.json()["broker"] == {"ok": False, "detail": "unavailable"}
    assert "s3cret" not in anonymous.content.decode()
    assert "pid" not in anonymous.json()["control"]["detail"]
    client.force_login(admin_user)
    assert client.get("/api/health/").json()["broker"]["detail"] == error


def test_pools_show_a_client_its_own_counts_and_no_workers(make_client, pipelines):
    alice_app, alice = make_client("alice")
    bob_app, _ = make_client("bob")
    _, staff = make_client("ops", staff=True)
    worker_heartbeat(Heartbeat(pool="local", host="node7", target="local", version="1",
                               capacity=4, busy=3, name="local@node7"))
    for app in (alice_app, bob_app, bob_app):
        process_create(pipeline="hello", used_config={}, owner=app.user, application=app,
                       team=app.team_memberships.get().team)

    def local(api):
        return next(p for p in api.get("/api/pools/").json() if p["name"] == "local")

    mine = local(alice)
    assert mine["status"] == "up"
    assert mine["capacity"] == 4
    assert "workers" not in mine
    assert mine["workers_alive"] == 1  # how many, never which
    assert "busy" not in mine
    assert "node7" not in json.dumps(alice.get("/api/pools/").json())
    assert mine["pending"] + mine["queued"] == 1  # alice's own, not bob's two
    everyone = local(staff)
    assert everyone["pending"] + everyone["queued"] == 3
    assert [w["host"] for w in everyone["workers"]] == ["node7"]
    assert everyone["busy"] == 3


# --- create_client ------------------------------------------------------------------------------

def test_create_client_refuses_an_existing_user(db):
    get_user_model().objects.create(username="client-ops", is_staff=True)
    with pytest.raises(CommandError, match="'client-ops' exists already"):
        call_command("create_client", "ops", stdout=io.StringIO())
    assert not Application.objects.filter(name="ops").exists()
