"""Where a POST /api/processes/ spends its time: a loop of POSTs through Django's test client
under cProfile, the 60 costliest calls by cumulative time.

    eval "$(deploy/services.sh orch_profile orch_profile)"   # a database of its own
    .venv/bin/python manage.py migrate && .venv/bin/python manage.py load_pipelines
    .venv/bin/python -m bench.profile_post 200

It makes a client, its team and a token, and leaves them and the processes it posted in that
database. Nothing is published: no relay runs (the processes stay PENDING).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time
from datetime import timedelta


def main(count: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestration.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone
    from oauth2_provider.models import AccessToken, Application

    from apps.teams.services import team_client_add, team_create_named

    name = f"profile{int(time.time())}"
    user = get_user_model().objects.create(username=f"client-{name}")
    app = Application.objects.create(name=name, user=user, client_type="confidential",
                                     authorization_grant_type="client-credentials")
    team_client_add(team_create_named(name), app)
    token = AccessToken.objects.create(application=app, token=f"token-{name}",
                                       scope="read write",
                                       expires=timezone.now() + timedelta(hours=1))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    body = {"pipeline": "hello", "used_config": {}}
    for _ in range(20):  # warm up: imports, connections, caches
        client.post("/api/processes/", body, content_type="application/json")
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    for _ in range(count):
        client.post("/api/processes/", body, content_type="application/json")
    profile.disable()
    took = time.perf_counter() - started
    print(f"{count} POSTs in {took:.2f} s: {took / count * 1000:.1f} ms each, profiled")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(60)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
