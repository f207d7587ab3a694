"""The health check of a part of docker-compose.yml:  python deploy/compose/health.py PART

- ``web``: gunicorn answers GET /api/health/ (any HTTP answer: the control consumer or the
  beat being down is their own check's business);
- ``control``, ``beat``: that part's heartbeat is recent, as ``manage.py health`` reads it;
- ``pool NAME``: the control plane counts a live worker of pool NAME (GET /api/health/ on
  the web server, ``ORCH_COMPOSE_WEB``): this worker's signed heartbeats reach it.

Exit 0 when healthy, 1 (with the reason) when not.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request


def get_health(base: str) -> tuple[int, dict]:
    # Host: a name ALLOWED_HOSTS has whatever address the check goes through.
    request = urllib.request.Request(  # noqa: S310 - an http URL of ours, never a user's
        base + "/api/health/", headers={"Host": "localhost"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - as above
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def main(argv: list[str]) -> str | None:
    """None when healthy, else why not."""
    part = argv[0] if argv else ""
    if part == "web":
        status, _ = get_health("http://127.0.0.1:8000")
        return None if status in (200, 503) else f"GET /api/health/ answered {status}"
    if part in ("control", "beat"):
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestration.settings")
        import django

        django.setup()
        from apps.processes.health import heartbeat_state

        state = heartbeat_state(part)
        return None if state["ok"] else state["detail"]
    if part == "pool" and len(argv) == 2:
        _, report = get_health(os.environ.get("ORCH_COMPOSE_WEB", "http://web:8000"))
        return None if argv[1] in report.get("pools", {}) else f"no live worker of {argv[1]}"
    return "usage: health.py web|control|beat|pool NAME"


if __name__ == "__main__":
    try:
        reason = main(sys.argv[1:])
    except Exception as exc:  # any failure is "unhealthy", said in one line
        reason = f"{type(exc).__name__}: {exc}"
    if reason:
        sys.exit(f"unhealthy: {reason}")
