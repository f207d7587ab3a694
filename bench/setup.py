"""Preparing a benchmark run: the bench's own database and vhost, its pipelines, its OAuth2
clients, and the 1,000,000 generated processes of the scale benchmark."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from testbed.services import ROOT

# The bench's pipelines: a no-op on the local pool (end to end, start latency) and the same
# on a pool no worker serves (submit throughput: nothing consumes what is published).
NOOP = """name: {name}
version: "1.0"
description: Does nothing; the benchmark's job.
target: local
pool: {pool}
run:
  command: ["true"]
resources: {{cpus: 1, memory: 64M, time_limit: 1m}}
config_schema:
  type: object
  properties:
    name: {{type: string, maxLength: 200}}
  additionalProperties: false
defaults: {{name: bench}}
"""
IDLE_POOL = """name: bench-idle
target: local
capacity: 1000
settings: {}
"""
IDLE_POOL_NAME = "bench-idle"
# Start latency on the other targets: a job that runs until the bench stops it.
SLEEP = """name: {name}
version: "1.0"
description: Sleeps until stopped; the benchmark's start latency on {target}.
target: {target}
pool: {pool}
run:
{run}
resources: {{cpus: 1, memory: 64M, time_limit: 5m}}
"""
SLEEP_TARGETS = ("docker", "slurm")


@contextmanager
def run_dir(prefix: str, say: Callable[[str], None], keep: bool = False) -> Iterator[Path]:
    """A directory of the run's own (its logs under ``logs``): removed after a run that
    ended well unless ``keep``; after one that failed, kept, and said where."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / "logs").mkdir()
    try:
        yield path
    except BaseException:
        say(f"failed; the logs are kept in {path / 'logs'}")
        raise
    if not keep:
        shutil.rmtree(path, ignore_errors=True)


def services_env(database: str, vhost: str) -> dict[str, str]:
    """DATABASE_URL and ORCH_BROKER_URL of the bench's own database and vhost, from
    deploy/services.sh (which installs and starts PostgreSQL and RabbitMQ when missing). The
    database is made anew: a bench measures this checkout, never the schema an earlier run (or
    another checkout's migrations) left in it."""
    done = subprocess.run([str(ROOT / "deploy" / "services.sh"), database, vhost],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:  # say why: the bench's row shows this message
        raise RuntimeError(f"deploy/services.sh {database} {vhost} exited {done.returncode}: "
                           f"{done.stderr.strip()[-500:]}")
    found = _exports(done.stdout)
    _database_anew(found["DATABASE_URL"], database)
    return found


def _database_anew(url: str, database: str) -> None:
    import psycopg2
    from psycopg2 import sql

    server = urlsplit(url)
    db = psycopg2.connect(host=server.hostname, port=server.port or 5432,
                          user=server.username or "postgres", password=server.password,
                          dbname="postgres")
    db.autocommit = True
    try:
        with db.cursor() as cursor:
            name = sql.Identifier(database)
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(name))
    finally:
        db.close()


def engines_env() -> dict[str, str]:
    """Start the container engine and the Slurm cluster as deploy/test.sh does (each script
    is idempotent) and return the settings they print."""
    found: dict[str, str] = {}
    for name in ("container-engine.sh", "slurm-cluster.sh"):
        script = ROOT / "deploy" / name
        if os.access(script, os.X_OK):
            done = subprocess.run([str(script), "start"], capture_output=True, text=True,
                                  check=True)
            found.update(_exports(done.stdout))
    return found


def _exports(text: str) -> dict[str, str]:
    """The variables of ``export A=1 B=2`` lines."""
    found = {}
    for line in text.splitlines():
        if line.startswith("export "):
            for word in shlex.split(line[len("export "):]):
                key, _, value = word.partition("=")
                found[key] = value
    return found


def pipelines_dir(run_dir: Path) -> Path:
    """The shipped pipelines and pools, plus the bench's two no-op pipelines."""
    folder = run_dir / "pipelines"
    shutil.copytree(ROOT / "pipelines", folder)
    (folder / "noop.yaml").write_text(NOOP.format(name="noop", pool="local"))
    (folder / "noop-idle.yaml").write_text(NOOP.format(name="noop-idle", pool=IDLE_POOL_NAME))
    (folder / "pools" / f"{IDLE_POOL_NAME}.yaml").write_text(IDLE_POOL)
    # The no-op runs measure the path, not a pool's capacity: admission must not hold them.
    local = folder / "pools" / "local.yaml"
    local.write_text(re.sub(r"(?m)^capacity: \d+$", "capacity: 1000", local.read_text()))
    for target in SLEEP_TARGETS:
        pool = _first(folder / "pools", target)
        if pool is None:
            continue
        run = "  command: [sleep, \"300\"]"
        if target == "docker":
            shipped = _first(folder, target)
            image = shipped and (shipped.get("run") or {}).get("image")
            if not image:
                continue
            run = f"  image: {json.dumps(image)}\n" + run
        (folder / f"bench-sleep-{target}.yaml").write_text(SLEEP.format(
            name=f"bench-sleep-{target}", target=target, pool=pool["name"], run=run))
    return folder


def _first(folder: Path, target: str) -> dict | None:
    """The first YAML definition in ``folder`` whose target is ``target``."""
    import yaml

    for path in sorted(folder.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and data.get("target") == target:
            return data
    return None


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django

    django.setup()


def database_prepare() -> None:
    """Migrate, create the baseline's table, load the pipelines, forget earlier bench runs'
    processes (a database made anew by services_env has none)."""
    from django.core.management import call_command
    from django.db import connection

    from apps.pipelines.services import pipelines_load
    from apps.processes.models import Process
    from bench.models import PlainRow

    call_command("migrate", verbosity=0, interactive=False)
    if PlainRow._meta.db_table not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(PlainRow)
    PlainRow.objects.all().delete()
    report = pipelines_load()
    if report.errors:
        raise RuntimeError(f"pipelines not loaded: {report.errors}")
    Process.objects.exclude(application__name__startswith=SCALE_CLIENT).delete()


def client_create(name: str) -> tuple[str, str]:
    """An OAuth2 client-credentials client, operator of a team of its own named after it:
    (client_id, client_secret)."""
    from django.contrib.auth import get_user_model
    from oauth2_provider.generators import generate_client_secret
    from oauth2_provider.models import get_application_model

    application_model = get_application_model()
    application_model.objects.filter(name=name).delete()
    user, _ = get_user_model().objects.get_or_create(username=f"client-{name}")
    secret = generate_client_secret()
    app = application_model.objects.create(
        name=name, user=user, client_type=application_model.CLIENT_CONFIDENTIAL,
        authorization_grant_type=application_model.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,
    )
    from apps.teams.models import Team
    from apps.teams.services import team_client_add

    team_client_add(Team.objects.get_or_create(slug=name, defaults={"name": name})[0], app)
    return app.client_id, secret


def token_get(base_url: str, client_id: str, secret: str) -> str:
    """A bearer token through the real endpoint, as a client gets one."""
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - our own server, over http
        f"{base_url}/o/token/", data=b"grant_type=client_credentials",
        headers={"Authorization": f"Basic {basic}",
                 "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - as above
        return json.load(answer)["access_token"]


# --- the scale benchmark's rows -----------------------------------------------------------------

SCALE_CLIENT = "bench-scale"
# The scale rows' pool: defined by no file, so nothing admits, publishes or resends the 1 % of
# them still waiting (on pool local, the poll loop's resend of old QUEUED specs kept its worker
# busy with them, and the start latency row after them never saw its run start).
SCALE_POOL = "bench-scale"

GENERATE_SQL = """
INSERT INTO processes_process (
    id, pipeline_id, pipeline_version_id, owner_id, application_id, team_id, used_config, state,
    target, pool, handle, host, exit_code, message, log_size, log_kept, log_cursor,
    log_truncated, idempotency_key, stop_requested_at, missing_since, created_at, updated_at,
    queued_at, submitted_at, started_at, finished_at)
SELECT gen_random_uuid(), %(pipeline)s, %(version)s, %(owner)s, %(application)s, %(team)s,
       jsonb_build_object('name', 'row ' || g), s.state, 'local', %(pool)s,
       CASE WHEN s.state = 'PENDING' THEN '' ELSE g::text END,
       CASE WHEN s.state = 'PENDING' THEN '' ELSE 'bench-host' END,
       CASE s.state WHEN 'SUCCEEDED' THEN 0 WHEN 'FAILED' THEN 1 WHEN 'STOPPED' THEN 143 END,
       CASE s.state WHEN 'SUCCEEDED' THEN 'finished' WHEN 'FAILED' THEN 'exited with code 1'
            WHEN 'STOPPED' THEN 'stopped on request' ELSE '' END,
       40, 40, '', false, NULL, NULL, NULL,
       t.at, t.at + interval '3 seconds',
       CASE WHEN s.state = 'PENDING' THEN NULL ELSE t.at END,
       CASE WHEN s.state = 'PENDING' THEN NULL ELSE t.at + interval '1 second' END,
       CASE WHEN s.state = 'PENDING' THEN NULL ELSE t.at + interval '1 second' END,
       CASE WHEN s.state = 'PENDING' THEN NULL ELSE t.at + interval '3 seconds' END
FROM generate_series(1, %(count)s) AS g,
     LATERAL (SELECT now() - interval '1 hour' - g * interval '2 seconds' AS at) AS t,
     LATERAL (SELECT CASE WHEN g %% 100 = 0 THEN 'PENDING' WHEN g %% 50 = 1 THEN 'FAILED'
                          WHEN g %% 97 = 3 THEN 'STOPPED' ELSE 'SUCCEEDED' END AS state) AS s
"""


def scale_rows(count: int) -> dict:
    """``count`` processes of one client, generated directly in PostgreSQL (not through the
    API): finished runs spread over the past weeks and 1 % still waiting (PENDING) on a pool no
    file defines, so neither admission nor the poll loop has anything to do with them."""
    from django.db import connection
    from oauth2_provider.models import get_application_model

    from apps.pipelines.models import PipelineVersion
    from apps.processes.models import Process

    name = f"{SCALE_CLIENT}-{count}"
    application = get_application_model().objects.filter(name=name).first()
    started = time.perf_counter()
    generated = False
    if application is None or Process.objects.filter(  # rows older than teams have none
            application=application, team__isnull=False).count() != count:
        Process.objects.filter(application__name=name).delete()
        get_application_model().objects.filter(name=name).delete()
        client_create(name)
        application = get_application_model().objects.get(name=name)
        version = PipelineVersion.objects.get(pipeline__name="noop")
        with connection.cursor() as cursor:
            cursor.execute(GENERATE_SQL, {
                "pipeline": version.pipeline_id, "version": version.pk,
                "owner": application.user_id, "application": application.pk,
                "team": application.team_memberships.get().team_id, "count": count,
                "pool": SCALE_POOL,
            })
            cursor.execute("ANALYZE processes_process")
        generated = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = 'processes_process'")
        table_rows = cursor.fetchone()[0]
    return {"client": name, "rows": count, "table_rows_estimate": table_rows,
            "generated": generated, "seconds": time.perf_counter() - started}


def token_for(application_name: str) -> str:
    """A bearer token of an existing client, made directly (its secret is not kept)."""
    from datetime import timedelta

    from django.utils import timezone
    from oauth2_provider.generators import generate_client_secret
    from oauth2_provider.models import get_access_token_model, get_application_model

    application = get_application_model().objects.get(name=application_name)
    token = generate_client_secret()[:40]
    get_access_token_model().objects.create(
        application=application, token=token, scope="read write",
        expires=timezone.now() + timedelta(hours=2),
    )
    return token
