"""The Python client (orchestration_client.Client) against the real product through HTTP:
gunicorn, PostgreSQL, RabbitMQ, the control consumer, the beat and a local worker. What a
program sees: runs waited for, logs followed through a restart of the web server, every kind
of error as its own exception, tokens renewed, ids by prefix."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from orchestration_client import (
    AmbiguousPrefix,
    BadRequest,
    Client,
    NoSuchRoute,
    NotFound,
    Refused,
    Token,
    Unreachable,
    WaitTimeout,
)

from tests.client.support import finished_process, new_client, twin_ids
from tests.e2e.stack import free_port, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def credentials(client_stack, pipelines):
    """(url, client id, secret) of a new client of the running stack."""
    url = client_stack[0]
    return (url, *new_client("py-client"))


@pytest.fixture
def api(credentials):
    return Client(*credentials, retry_for=60)


def test_a_run_waited_for_with_its_logs_events_and_listing(api):
    process = api.run("hello", {"name": "Ada"}, wait=True, timeout=60)
    pid = process["id"]
    assert process["state"] == "SUCCEEDED"
    assert process["exit_code"] == 0
    assert process["used_config"] == {"name": "Ada"}
    assert "Hello, Ada!" in "".join(api.logs(pid))
    assert [e["to"] for e in api.events(pid)] == [
        "PENDING", "QUEUED", "SUBMITTED", "RUNNING", "SUCCEEDED"]
    assert api.status(pid[:6])["finished"] is True  # a prefix does as well as the id
    assert api.get(pid.upper())["id"] == pid
    assert pid in [p["id"] for p in api.ps(state="SUCCEEDED", pipeline="hello")]
    assert [p["id"] for p in api.ps(state=["FAILED"])] == []


def test_wait_follow_and_stop_outlive_a_restart_of_the_web_server(api, client_stack):
    _, web, _ = client_stack
    pid = api.run("sleep", {"seconds": 60})["id"]
    seen: list[str] = []
    follower = threading.Thread(target=lambda: seen.extend(api.logs(pid, follow=True)),
                                daemon=True)
    follower.start()
    wait_until(lambda: "slept 1 of 60 s" in "".join(seen), 30, what="the first lines")
    web.stop()  # the follower meets refused connections until the server is back
    time.sleep(3)
    web.start().wait_ready(90)
    wait_until(lambda: "slept 6 of 60 s" in "".join(seen), 30, what="lines after the restart")
    assert api.stop(pid[:8])["state"] in ("STOPPING", "STOPPED")
    follower.join(30)
    assert not follower.is_alive(), "following did not end with the process"
    assert api.wait(pid, 30)["state"] == "STOPPED"
    lines = "".join(seen).splitlines()
    # Every line once, in order, across the restart: the follower went on from its offset.
    assert lines == [f"slept {i} of 60 s" for i in range(len(lines))]


def test_a_run_with_wait_survives_the_web_server_going_away_while_it_waits(api, client_stack):
    _, web, _ = client_stack
    ended: dict = {}
    waiter = threading.Thread(target=lambda: ended.update(
        api.run("sleep", {"seconds": 4}, wait=True, timeout=90)), daemon=True)
    waiter.start()
    wait_until(lambda: any(p["state"] == "RUNNING" for p in api.ps(pipeline="sleep")), 30,
               what="the run to start")
    web.restart().wait_ready(90)
    waiter.join(90)
    assert ended["state"] == "SUCCEEDED"


def test_a_wait_that_runs_out_of_time_says_where_the_process_is(api):
    pid = api.run("sleep", {"seconds": 30})["id"]
    with pytest.raises(WaitTimeout) as timed_out:
        api.wait(pid, timeout=1)
    assert timed_out.value.process["state"] in ("PENDING", "QUEUED", "SUBMITTED", "RUNNING")
    assert api.stop(pid)["id"] == pid


def test_rerun_and_the_idempotency_key(api):
    first = api.run("hello", {"name": "once"}, idempotency_key="client-test-1")
    again = api.run("hello", {"name": "once"}, idempotency_key="client-test-1")
    assert again["id"] == first["id"]
    api.wait(first["id"], 60)
    rerun = api.rerun(first["id"][:10], wait=True, timeout=60)
    assert rerun["id"] != first["id"]
    assert rerun["state"] == "SUCCEEDED"
    assert rerun["used_config"] == {"name": "once"}


def test_errors_come_as_exceptions_of_their_kind(api, credentials):
    url, client_id, _ = credentials
    with pytest.raises(Refused) as refused:
        Client(url, client_id, "not-the-secret").pipelines()
    assert refused.value.status == 401
    with pytest.raises(Unreachable):
        Client(f"http://127.0.0.1:{free_port()}", client_id, "x").pipelines()
    with pytest.raises(BadRequest) as bad:
        api.run("sleep", {"seconds": "ten"})
    assert bad.value.status == 400
    assert "used_config" in bad.value.fields
    with pytest.raises(BadRequest) as bad:
        api.run("no-such-pipeline")
    assert "pipeline" in bad.value.fields
    with pytest.raises(NotFound):
        api.pipeline("no-such-pipeline")
    with pytest.raises(NotFound):
        api.get("00000000-0000-4000-8000-000000000000")
    with pytest.raises(NotFound):
        api.status("0000")
    with pytest.raises(BadRequest) as bad:
        api.status("not-hex")
    assert "id_prefix" in bad.value.fields


def test_an_id_prefix_names_one_process_or_is_ambiguous(api, credentials):
    first, second = twin_ids("abcd")
    finished_process(first, credentials[1])
    finished_process(second, credentials[1])
    with pytest.raises(AmbiguousPrefix) as ambiguous:
        api.resolve("abcd")
    assert sorted(ambiguous.value.matches) == sorted([str_id(first), str_id(second)])
    assert api.resolve(str_id(first)[:13]) == str_id(first)  # with its dash
    assert api.resolve(first[:20].upper()) == str_id(first)  # without dashes, any case
    # Another client's process does not exist for this one, whatever its prefix.
    other_id, _ = new_client("someone-else")
    stranger = "abce" + first[4:]
    finished_process(stranger, other_id)
    with pytest.raises(NotFound):
        api.resolve("abce")


def str_id(hex_id: str) -> str:
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def test_a_token_is_renewed_before_it_expires_and_when_the_server_forgets_it(credentials):
    told: list[Token] = []
    now = time.time()
    due = Token("an-old-token", expires_at=now + 30, issued_at=now - 3570)
    api = Client(*credentials, token=due, on_token=told.append)
    assert api.pools()
    assert len(told) == 1
    assert told[0].access_token != "an-old-token"
    assert not told[0].due()
    # A token the server does not know (revoked): one new token, and the call goes through.
    forgotten = Token("revoked-token", expires_at=now + 3600, issued_at=now)
    api = Client(*credentials, token=forgotten, on_token=told.append)
    assert [p["name"] for p in api.pools()]
    assert len(told) == 2


def test_pools_teams_and_pipelines(api):
    pools = {p["name"]: p for p in api.pools()}
    wait_until(lambda: {p["name"]: p for p in api.pools()}["local"]["status"] == "up", 30,
               what="the local worker's heartbeat")
    assert pools["local"]["target"] == "local"
    assert {"capacity", "running", "waiting", "paused"} <= set(pools["local"])
    assert [t["slug"] for t in api.teams()] == ["py-client"]
    assert api.team("py-client")["clients"][0]["name"] == "py-client"
    assert "hello" in [p["name"] for p in api.pipelines()]
    assert api.pipeline("sleep")["config_schema"]["required"] == ["seconds"]


def test_a_pool_paused_and_resumed_by_staff_and_its_queue(api, credentials):
    url = credentials[0]
    with pytest.raises(Refused) as refused:
        api.pause_pool("local")
    assert refused.value.status == 403
    staff = Client(url, *new_client("py-staff", staff=True))
    assert staff.pause_pool("local") == {"name": "local", "paused": True}
    try:
        waiting = api.run("hello", {"name": "queued"})
        queue = list(api.pool_queue("local"))
        assert [(e["id"], e["position"]) for e in queue] == [(waiting["id"], 1)]
        assert "paused" in queue[0]["waiting_for"]
        assert {p["name"]: p for p in api.pools()}["local"]["paused"] is True
    finally:
        assert staff.resume_pool("local") == {"name": "local", "paused": False}
    assert api.wait(waiting["id"], 60)["state"] == "SUCCEEDED"
    assert staff.health()["status"] == "ok"
    with pytest.raises(NotFound):
        list(api.pool_queue("no-such-pool"))


def test_datasets_and_outputs_as_far_as_the_server_has_them(api, client_stack, tmp_path):
    """Until its routes exist (issue 19), each call says which route the server lacks; once
    they do, the same calls upload, list and download."""
    paths = requests.get(f"{client_stack[0]}/api/schema/?format=json", timeout=10).json()["paths"]
    data = tmp_path / "words.txt"
    data.write_text("to be or not to be\n" * 1000)
    done: list[int] = []
    if "/api/datasets/" not in paths:
        with pytest.raises(NoSuchRoute, match="no datasets route yet"):
            api.upload(data)
        with pytest.raises(NoSuchRoute, match="no datasets route yet"):
            list(api.datasets())
    else:
        dataset = api.upload(data, progress=lambda sent, total: done.append(sent))
        assert dataset["size"] == data.stat().st_size
        assert done[-1] == data.stat().st_size
        assert dataset["id"] in [d["id"] for d in api.datasets()]
        copy = api.download_dataset(dataset["id"], tmp_path / "copy.txt")
        assert copy.read_bytes() == data.read_bytes()
    pid = api.run("hello", {"name": "out"}, wait=True, timeout=60)["id"]
    if "/api/processes/{id}/outputs/" not in paths:
        with pytest.raises(NoSuchRoute, match="no outputs route yet"):
            api.outputs(pid)
    else:
        assert isinstance(api.outputs(pid), list)


def test_a_sweep_started_read_and_stopped(api):
    done = api.sweep("hello", grid={"name": ["Ada", "Grace"]}, idempotency_key="sweep-once")
    assert done["size"] == 2
    again = api.sweep("hello", grid={"name": ["Ada", "Grace"]}, idempotency_key="sweep-once")
    assert again["id"] == done["id"]  # the key answers the first sweep, none is started
    runs = list(api.sweep_processes(done["id"]))
    assert [p["used_config"]["name"] for p in runs] == ["Ada", "Grace"]
    assert {api.wait(p["id"], 60)["state"] for p in runs} == {"SUCCEEDED"}
    assert api.sweep_get(done["id"])["counts"]["SUCCEEDED"] == 2

    sleeping = api.sweep("sleep", configs=[{"seconds": 60}] * 3)
    stopped = api.sweep_stop(sleeping["id"])
    assert stopped["stopped"] == 3
    ends = {api.wait(p["id"], 60)["state"] for p in api.sweep_processes(sleeping["id"])}
    assert ends == {"STOPPED"}
