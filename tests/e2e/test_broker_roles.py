"""Broker users per role, on the real RabbitMQ (deploy/broker-users.sh makes them): a pool's
worker reads only its own pool's queues and publishes only to ``control``; the control plane's
user serves the web, the control consumer and the beat. What the broker refuses, it refuses
with ACCESS_REFUSED, whoever holds the worker's password."""

from __future__ import annotations

import json
import os
from io import StringIO

import pytest
import requests
from amqp import Message
from amqp.exceptions import AccessRefused
from django.core.management import call_command
from kombu import Connection, Exchange, Queue

from tests.e2e import stack
from tests.e2e.client import wait_for_end
from workers.contract import CONTROL_QUEUE, State, host_queue, pool_queue, this_host

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

POOL = "local"  # the worker whose password an attacker holds
OTHER_POOL = "docker-main"


@pytest.fixture(scope="module")
def broker_url():
    url = os.environ.get("ORCH_BROKER_URL", "")
    if not url.startswith("amqp"):
        pytest.skip("broker users are RabbitMQ's: run on RabbitMQ (deploy/services.sh)")
    stack.make_broker_users(url)
    return url


def connect(url: str) -> Connection:
    """A connection whose publishes wait for the broker's answer: a refusal is raised there."""
    return Connection(url, transport_options={"confirm_publish": True}, connect_timeout=10)


def as_pool_worker(broker_url: str) -> Connection:
    return connect(stack.role_broker_url(broker_url, f"pool.{POOL}"))


@pytest.fixture(scope="module")
def others_queues(broker_url):
    """``control`` and another pool's queues, made by the control plane as Celery makes them,
    so that a refusal is about rights, never about a queue that is not there."""
    names = [CONTROL_QUEUE, pool_queue(OTHER_POOL), host_queue(OTHER_POOL, this_host())]
    with connect(stack.role_broker_url(broker_url, "control")) as conn:
        for name in names:
            Queue(name, Exchange(name, type="direct"), routing_key=name)(
                conn.default_channel).declare()
    return names


def test_every_role_has_a_user_of_its_own(broker_url):
    users = stack.broker_users(broker_url)
    pools = {f"pool.{path.stem}" for path in (stack.ROOT / "pipelines" / "pools").glob("*.yaml")}
    assert {"control", *pools} <= set(users)
    names = [user for user, _ in users.values()]
    assert "guest" not in names
    assert len(set(names)) == len(names)
    assert len({password for _, password in users.values()}) == len(users)


@pytest.mark.parametrize("which", [0, 1, 2], ids=["control", "another pool", "another host"])
def test_a_pools_user_cannot_read_control_or_another_pools_queue(broker_url, others_queues,
                                                                 which):
    queue = others_queues[which]
    with as_pool_worker(broker_url) as conn:
        with pytest.raises(AccessRefused, match=f"queue '{queue}'"):
            conn.channel().basic_consume(queue=queue, callback=lambda message: None)
        with pytest.raises(AccessRefused, match=f"queue '{queue}'"):
            conn.channel().basic_get(queue=queue)
        with pytest.raises(AccessRefused, match=f"queue '{queue}'"):
            conn.channel().queue_purge(queue=queue)


def test_a_pools_user_cannot_take_over_control(broker_url, others_queues):
    """Nor delete ``control``, nor bind its own queue to control's exchange to read events."""
    with as_pool_worker(broker_url) as conn:
        with pytest.raises(AccessRefused, match="queue 'control'"):
            conn.channel().queue_delete(queue=CONTROL_QUEUE)
        with pytest.raises(AccessRefused, match="exchange 'control'"):
            conn.channel().queue_bind(queue=pool_queue(POOL), exchange=CONTROL_QUEUE,
                                      routing_key=CONTROL_QUEUE)


@pytest.mark.parametrize("exchange, routing_key, refused", [
    (pool_queue(OTHER_POOL), pool_queue(OTHER_POOL), f"exchange '{pool_queue(OTHER_POOL)}'"),
    ("", pool_queue(OTHER_POOL), "exchange 'amq.default'"),  # the default reaches any queue
    ("", CONTROL_QUEUE, "exchange 'amq.default'"),
], ids=["another pool's exchange", "the default exchange", "control by the default exchange"])
def test_a_pools_user_publishes_only_to_control(broker_url, others_queues, exchange,
                                                routing_key, refused):
    with as_pool_worker(broker_url) as conn:
        with pytest.raises(AccessRefused, match=refused):
            conn.channel().basic_publish(Message(b"forged"), exchange=exchange,
                                         routing_key=routing_key)
        # ... while control's exchange takes its messages (this one is routed nowhere: the
        # broker confirms it and drops it, so the control plane never sees it).
        conn.channel().basic_publish(Message(b"{}"), exchange=CONTROL_QUEUE,
                                     routing_key="nowhere")


def test_a_worker_and_the_control_plane_run_a_job_each_as_its_own_user(
        broker_url, stack_env, control_plane, local_worker, pipelines):
    env, run_dir = stack_env
    users = stack.broker_users(broker_url)
    consumer, beat = control_plane
    stack.wait_until(lambda: " ready." in local_worker.output() or not local_worker.alive(),
                     timeout=60, what="the local worker to be ready")
    assert local_worker.alive(), local_worker.output()[-3000:]
    port = stack.free_port()
    url = f"http://127.0.0.1:{port}"
    web = stack.web(env, run_dir, port).start()
    try:
        stack.wait_until(lambda: healthy(url) or not web.alive(), timeout=90,
                         what="the web server to answer a healthy /api/health/")
        assert web.alive(), web.output()[-3000:]

        headers = {"Authorization": f"Bearer {token(url)}"}
        answer = requests.post(f"{url}/api/processes/", headers=headers, timeout=30,
                               json={"pipeline": "hello", "used_config": {"name": "roles"}})
        assert answer.status_code == 201, answer.text
        pid = answer.json()["id"]
        process = wait_for_end(pid)
        assert process.state == State.SUCCEEDED, process.message
        events = requests.get(f"{url}/api/processes/{pid}/events/", headers=headers,
                              timeout=30).json()
        assert [e["to"] for e in events] == ["PENDING", "QUEUED", "SUBMITTED", "RUNNING",
                                             "SUCCEEDED"]
        stack.wait_until(lambda: "Hello, roles!" in requests.get(
            f"{url}/api/processes/{pid}/logs/", headers=headers, timeout=30).json()["text"],
            what="the job's log")
    finally:
        web.stop()
    # Each part logged in as its role (Celery prints the broker it connected to).
    assert f"Connected to amqp://{users[f'pool.{POOL}'][0]}:**@" in local_worker.output()
    assert f"Connected to amqp://{users['control'][0]}:**@" in consumer.output()
    assert f"amqp://{users['control'][0]}:**@" in beat.output()
    assert users["control"][0] in web.env["ORCH_BROKER_URL"]


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/api/health/", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def token(url: str) -> str:
    """A bearer token from POST /o/token/, as a client gets one."""
    out = StringIO()
    call_command("create_client", "broker-roles", "--format", "json", stdout=out)
    client = json.loads(out.getvalue())
    answer = requests.post(f"{url}/o/token/", data={"grant_type": "client_credentials"},
                           auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]
