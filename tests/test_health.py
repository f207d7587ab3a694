"""GET /api/health/ and ``manage.py health``: every part of the control plane is reported, and
a part whose heartbeat went stale makes it 503 with that part named."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from apps.pipelines.models import ServiceHeartbeat
from apps.pipelines.services import service_heartbeat, worker_heartbeat
from workers.contract import Heartbeat, this_host

HEALTH = "/api/health/"


def silent_since_before_the_bound(name: str, host: str = "node1") -> None:
    """A heartbeat of ``name`` on ``host`` older than WORKER_TIMEOUT_S."""
    ServiceHeartbeat.objects.update_or_create(
        name=name, host=host,
        defaults={"pid": 4242,
                  "last_seen": timezone.now() - timedelta(seconds=settings.WORKER_TIMEOUT_S + 5)})


@pytest.fixture
def control_plane_alive(pipelines):
    service_heartbeat(ServiceHeartbeat.CONTROL)
    service_heartbeat(ServiceHeartbeat.BEAT)


@pytest.fixture
def local_worker_alive(db):
    worker_heartbeat(Heartbeat(pool="local", host="node1", target="local", version="1",
                               capacity=4, busy=1, name="local@node1"))


def test_every_part_alive_is_200_and_a_pool_without_worker_is_listed(
        client, control_plane_alive, local_worker_alive):
    response = client.get(HEALTH)
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["down"] == []
    assert all(body[part]["ok"] for part in ("database", "broker", "control", "beat"))
    assert body["pools"]["local"] == {"workers": 1, "capacity": 4, "busy": 1}
    # Pools of pipelines/pools/*.yaml with no live worker: reported, yet the API is healthy.
    assert "docker-main" in body["pools_down"]
    assert "local" not in body["pools_down"]
    assert "docker-main" not in body["pools"]


def test_a_stale_control_consumer_is_503_naming_it(client, admin_user, control_plane_alive):
    silent_since_before_the_bound(ServiceHeartbeat.CONTROL, host=this_host())
    client.force_login(admin_user)  # the details are for staff (tests/test_auth_surface.py)
    response = client.get(HEALTH)
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["down"] == ["control"]
    assert body["control"]["ok"] is False
    assert "over the" in body["control"]["detail"]
    assert body["beat"]["ok"] is True


def test_a_beat_never_seen_is_503_naming_it(client, pipelines):
    service_heartbeat(ServiceHeartbeat.CONTROL)
    response = client.get(HEALTH)
    assert response.status_code == 503
    assert response.json()["down"] == ["beat"]


def test_one_live_consumer_of_several_hosts_is_enough(client, control_plane_alive):
    silent_since_before_the_bound(ServiceHeartbeat.CONTROL)  # another host's consumer, gone
    assert client.get(HEALTH).status_code == 200


def test_the_health_command_prints_every_part_and_exits_1_when_one_is_down(
        control_plane_alive):
    out = io.StringIO()
    call_command("health", stdout=out)  # healthy: returns, exit status 0
    text = out.getvalue()
    assert text.startswith("health: ok")
    assert "control consumer" in text
    assert "beat" in text
    assert "docker-main" in text

    ServiceHeartbeat.objects.filter(name=ServiceHeartbeat.BEAT).delete()
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("health", stdout=out)
    assert exited.value.code == 1
    assert out.getvalue().startswith("health: unavailable (down: beat)")


def test_health_answers_when_the_database_cannot_authenticate_the_caller(
        client, control_plane_alive, monkeypatch):
    """While the database is away a token cannot be checked: the caller is anonymous, and the
    answer is health's own (never a 500), with no throttle count to write."""
    from django.db import OperationalError

    from apps.accounts.authentication import ClientCredentialsAuthentication

    def database_away(self, request):
        raise OperationalError("connection refused")

    monkeypatch.setattr(ClientCredentialsAuthentication, "authenticate", database_away)
    response = client.get(HEALTH, HTTP_AUTHORIZATION="Bearer some-token")
    assert response.status_code in (200, 503), response.content
    assert response.json()["database"]["detail"] in ("ok", "unavailable")  # the public view


def slurm_worker_saw(pool: str, target: str, cluster: dict) -> None:
    worker_heartbeat(Heartbeat(pool=pool, host="node1", target=target, version="1", capacity=16,
                               busy=0, name=f"{pool}@node1", cluster=cluster))


def test_a_slurm_pool_shows_its_cluster_and_rest_version_as_its_workers_report_them(
        client, admin_user, control_plane_alive):
    slurm_worker_saw("slurm-rest", "slurm_rest", {
        "reachable": True, "rest_api_version": "v0.0.42",
        "detail": "slurmrestd at http://10.0.0.5:6820 answers; v0.0.42 in use"})
    slurm_worker_saw("slurm-main", "slurm", {
        "reachable": True, "rest_api_version": None, "detail": "scontrol ping: ... is UP"})

    public = client.get(HEALTH).json()
    assert public["pools"]["slurm-rest"]["cluster"] == {
        "reachable": True, "rest_api_version": "v0.0.42", "detail": "ok"}  # no address
    assert public["pools"]["slurm-main"]["cluster"]["rest_api_version"] is None
    assert not {"slurm-rest", "slurm-main"} & set(public["pools_down"])

    client.force_login(admin_user)
    staff = client.get(HEALTH).json()
    assert "10.0.0.5:6820" in staff["pools"]["slurm-rest"]["cluster"]["detail"]
    pools = {p["name"]: p for p in client.get("/api/pools/").json()}
    assert pools["slurm-rest"]["status"] == "up"
    assert pools["slurm-rest"]["cluster"]["rest_api_version"] == "v0.0.42"
    assert "cluster" not in pools["local"]


def test_a_slurm_pool_whose_daemon_serves_no_version_we_know_is_down(
        client, admin_user, control_plane_alive):
    said = ("slurmrestd at http://127.0.0.1:6820: slurmrestd serves v0.0.45, v0.0.46; this "
            "worker speaks v0.0.38, v0.0.39, v0.0.40, v0.0.41, v0.0.42, v0.0.43, v0.0.44")
    slurm_worker_saw("slurm-rest", "slurm_rest",
                     {"reachable": False, "rest_api_version": None, "detail": said})
    client.force_login(admin_user)
    body = client.get(HEALTH).json()
    assert "slurm-rest" in body["pools_down"]
    assert body["pools"]["slurm-rest"]["cluster"] == {
        "reachable": False, "rest_api_version": None, "detail": said}
    pools = {p["name"]: p for p in client.get("/api/pools/").json()}
    assert pools["slurm-rest"]["status"] == "down"
    assert pools["slurm-rest"]["cluster"]["detail"] == said
