"""Where a POST /api/processes/ spends its time: a loop of POSTs through Django's test client
under cProfile, the 60 costliest calls by cumulative time; with ``--cpu``, the CPU of one POST
beside the benchmark's baseline (a plain DRF POST that inserts one row), in the same process.

    eval "$(deploy/services.sh orch_profile orch_profile)"   # a database of its own
    .venv/bin/python manage.py migrate && .venv/bin/python manage.py load_pipelines
    .venv/bin/python -m bench.profile_post 200
    .venv/bin/python -m bench.profile_post 300 --cpu

It makes a client, its team and a token, and leaves them and the processes it posted in that
database. Nothing is published: no relay runs (the processes stay PENDING).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from datetime import timedelta

OURS = ("/api/processes/", {"pipeline": "hello", "used_config": {}})
PLAIN = ("/bench/plain/", {"name": "row", "payload": {"a": 1}})


def client_with_token():
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
    return Client(HTTP_AUTHORIZATION=f"Bearer {token.token}")


def cpu_ms(client, url: str, body: dict, count: int, *, cache: bool = True) -> float:
    """CPU of this process per POST (ms), after a warm-up; ``cache`` False forgets the checked
    tokens before each one, as a process that never saw the token would check it."""
    from apps.accounts import token_cache

    for _ in range(20):
        client.post(url, body, content_type="application/json")
    started = time.process_time()
    for _ in range(count):
        if not cache:
            token_cache.forget_all()
        answer = client.post(url, body, content_type="application/json")
    if answer.status_code != 201:
        raise RuntimeError(f"POST {url} answered {answer.status_code}: {answer.content!r}")
    return (time.process_time() - started) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_post")
    parser.add_argument("count", type=int, nargs="?", default=200)
    parser.add_argument("--cpu", action="store_true",
                        help="CPU per POST, ours and the baseline's, instead of a profile")
    args = parser.parse_args()
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"  # the product and the baseline
    import django

    django.setup()
    from django.db import connection

    from bench.models import PlainRow

    if PlainRow._meta.db_table not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(PlainRow)
    client = client_with_token()
    if args.cpu:
        for label, (url, body), cache in (
                ("POST /api/processes/ (token cache on, as served)", OURS, True),
                ("plain DRF POST, django-oauth-toolkit's check (the baseline)", PLAIN, True),
                ("POST /api/processes/, every token checked anew", OURS, False)):
            print(f"{cpu_ms(client, url, body, args.count, cache=cache):7.2f} ms CPU  {label}")
        return
    url, body = OURS
    for _ in range(20):  # warm up: imports, connections, caches
        client.post(url, body, content_type="application/json")
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    for _ in range(args.count):
        client.post(url, body, content_type="application/json")
    profile.disable()
    took = time.perf_counter() - started
    print(f"{args.count} POSTs in {took:.2f} s: {took / args.count * 1000:.1f} ms each, profiled")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(60)


if __name__ == "__main__":
    main()
