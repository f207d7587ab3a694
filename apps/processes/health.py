"""GET /api/health/: no authentication, for load balancers and humans."""

from __future__ import annotations

from django.db import connection
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.pipelines.selectors import live_workers
from orchestration.celery import app

BROKER_TIMEOUT_S = 2


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


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):
        db, db_detail = database_ok()
        broker, broker_detail = broker_ok()
        pools: dict[str, dict] = {}
        if db:
            for worker in live_workers():
                pool = pools.setdefault(worker.pool, {"workers": 0, "capacity": 0, "busy": 0})
                pool["workers"] += 1
                pool["capacity"] += worker.capacity
                pool["busy"] += worker.busy
        healthy = db and broker
        body = {
            "status": "ok" if healthy else "unavailable",
            "database": {"ok": db, "detail": db_detail},
            "broker": {"ok": broker, "detail": broker_detail},
            "pools": pools,
        }
        return Response(body, status=200 if healthy else 503)
