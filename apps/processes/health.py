"""The health of every part: the database, the broker, the control consumer, the beat and the
pools. ``health_report`` computes it; GET /api/health/ (no authentication, for load balancers
and humans) and ``manage.py health`` show it.

The control consumer and the beat count as down when their last heartbeat is older than
WORKER_TIMEOUT_S (ORCH_WORKER_TIMEOUT_S, by default three heartbeat intervals), the same bound
as a pool's workers. A pool with no live worker is listed under ``pools_down`` but does not make
the control plane unavailable: its runs wait QUEUED until a worker comes. Staff also see
``refused``: messages and events on ``control`` that were not believed (forged, unsigned, from
a worker that does not hold the process), counted by reason.
"""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.schema import AUTH_ERRORS
from apps.pipelines.models import Pool, ServiceHeartbeat
from apps.pipelines.refusals import refusals_report
from apps.pipelines.selectors import cluster_of, last_service_heartbeat, live_workers
from apps.processes.schema import HealthSerializer
from apps.teams.access import Caller, sees_operations
from orchestration.celery import app

BROKER_TIMEOUT_S = 2
# The parts whose failure makes the control plane unavailable (503), in the order shown.
PARTS = ("database", "broker", "control", "beat")


def database_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, connection.vendor
    except Exception as exc:  # any failure is the answer, not an error of this view
        return False, str(exc)


def broker_ok() -> tuple[bool, str]:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
            return True, conn.transport_cls if isinstance(conn.transport_cls, str) else "ok"
    except Exception as exc:
        return False, str(exc)


def heartbeat_state(name: str) -> dict:
    """``ok`` when the last heartbeat of a control-plane part is within WORKER_TIMEOUT_S."""
    row = last_service_heartbeat(name)
    if row is None:
        return {"ok": False, "detail": "no heartbeat recorded", "last_seen": None}
    age = (timezone.now() - row.last_seen).total_seconds()
    ok = age <= settings.WORKER_TIMEOUT_S
    detail = f"last heartbeat {age:.0f} s ago from {row.host} (pid {row.pid})"
    if not ok:
        detail += f", over the {settings.WORKER_TIMEOUT_S:g} s bound"
    return {"ok": ok, "detail": detail, "last_seen": row.last_seen.isoformat()}


def pool_states() -> tuple[dict[str, dict], list[str]]:
    """Pools with live workers (their count, capacity, busy slots, and for a Slurm pool its
    cluster as they see it), and the pools that are down: defined with no live worker, or
    whose workers cannot use their cluster."""
    pools: dict[str, dict] = {}
    workers: dict[str, list] = {}
    for worker in live_workers():
        pool = pools.setdefault(worker.pool, {"workers": 0, "capacity": 0, "busy": 0})
        pool["workers"] += 1
        pool["capacity"] += worker.capacity
        pool["busy"] += worker.busy
        workers.setdefault(worker.pool, []).append(worker)
    down = set(Pool.objects.values_list("name", flat=True)) - set(pools)
    for name, pool in pools.items():
        if (cluster := cluster_of(workers[name])) is not None:
            pool["cluster"] = cluster
            if not cluster["reachable"]:
                down.add(name)
    return pools, sorted(down)


def health_report() -> dict:
    """The health of every part; ``status`` is "ok" only when no part in ``down``."""
    db, db_detail = database_ok()
    broker, broker_detail = broker_ok()
    unknown = {"ok": None, "detail": "unknown while the database is unavailable"}
    control, beat = unknown, unknown
    pools: dict[str, dict] = {}
    pools_down: list[str] = []
    refused: dict = {}
    if db:
        try:
            control = heartbeat_state(ServiceHeartbeat.CONTROL)
            beat = heartbeat_state(ServiceHeartbeat.BEAT)
            pools, pools_down = pool_states()
            refused = refusals_report()
        except (DatabaseError, InterfaceError) as exc:  # it went away between two queries
            db, db_detail = False, str(exc)
            control, beat, pools, pools_down, refused = unknown, unknown, {}, [], {}
    parts: dict[str, dict] = {
        "database": {"ok": db, "detail": db_detail},
        "broker": {"ok": broker, "detail": broker_detail},
        "control": control,
        "beat": beat,
    }
    down = [name for name in PARTS if parts[name]["ok"] is False]
    return {"status": "unavailable" if down else "ok", **parts, "down": down,
            "pools": pools, "pools_down": pools_down, "refused": refused}


def _without_cluster_detail(pool: dict) -> dict:
    """A pool as anyone sees it: its cluster's reachability and REST version, not the words
    (addresses, errors)."""
    if "cluster" not in pool:
        return pool
    cluster = {key: pool["cluster"][key] for key in ("reachable", "rest_api_version")}
    return {**pool, "cluster": {**cluster, "detail": "ok" if cluster["reachable"] else
                                "unavailable"}}


def public_report(report: dict) -> dict:
    """The report as anyone may read it: each part's state with a generic detail. The real
    details (a database's or broker's error text, hosts, pids, refused messages) are for
    staff and for ``manage.py health``."""
    public = dict(report)
    public.pop("refused", None)
    public["pools"] = {name: _without_cluster_detail(pool)
                       for name, pool in report.get("pools", {}).items()}
    for name in PARTS:
        part = dict(report[name])
        part["detail"] = {True: "ok", False: "unavailable", None: "unknown"}[part["ok"]]
        public[name] = part
    return public


class HealthView(APIView):
    """No token needed (load balancers, humans); those who run the service see the details."""

    permission_classes = ()
    # Health must answer while the database is away: no throttle counts (they live in the
    # database), and a caller who cannot be authenticated then is simply anonymous.
    throttle_classes = ()

    def perform_authentication(self, request):
        try:
            request.user  # noqa: B018 - DRF authenticates on first access
        except (DatabaseError, InterfaceError):
            request._not_authenticated()

    @extend_schema(
        summary="The health of every part (no token needed)",
        description="Anyone sees each part's state; a superuser, or a user allowed to view "
                    "workers, sees its details.",
        # A token is optional here: {} is "no authentication" in OpenAPI's terms. (The stubs
        # type ``auth`` as names; drf-spectacular takes OpenAPI security requirements.)
        auth=[{"oauth2": ["read"]}, {"cookieAuth": []}, {}],  # type: ignore[list-item]
        responses={
            200: OpenApiResponse(HealthSerializer, description="Every part is up."),
            429: AUTH_ERRORS[429],
            503: OpenApiResponse(HealthSerializer, description="`down` names each part that "
                                                               "is down."),
        },
    )
    def get(self, request):
        report = health_report()
        status = 200 if report["status"] == "ok" else 503
        try:
            details = sees_operations(Caller.of(request))
        except (DatabaseError, InterfaceError):  # with the database away, the public report
            details = False
        if not details:
            report = public_report(report)
        return Response(report, status=status)
