"""What the tests of the Python client (tests/client) and of the ``orch`` command
(tests/e2e/test_cli.py) share: a gunicorn web server over the test database, OAuth2 clients
made as `manage.py create_client` makes them, and processes with ids a test chooses."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

from django.core.management import call_command
from django.utils import timezone

from testbed import parts
from tests.e2e import stack


@contextmanager
def web_server(env: dict[str, str], log_dir: Path) -> Iterator[tuple[str, stack.Service]]:
    """gunicorn on a free port of 127.0.0.1, as `python -m orchestration web` starts it (two
    worker processes: a `logs -f` and a `stop` are served at once); its URL and service."""
    port = stack.free_port()
    server = parts.web(stack.as_role({**env, "DEBUG": "false"}, "control"), log_dir, port,
                       name=f"web-client-{port}", workers=2, threads=4)
    server.start().wait_ready(90)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.stop()


def new_client(name: str, *, staff: bool = False) -> tuple[str, str]:
    """(client id, secret) of a new OAuth2 client, an operator of a team of its own (and one
    of those who run the service, with ``staff``)."""
    out = StringIO()
    call_command("create_client", name, "--format", "json", *(["--staff"] if staff else []),
                 stdout=out)
    made = json.loads(out.getvalue())
    return made["client_id"], made["client_secret"]


def finished_process(process_id: str, client_id: str, pipeline: str = "hello"):
    """A SUCCEEDED process of the client's team with the id ``process_id``: how a test gets
    two ids that share a prefix without starting thousands of runs."""
    from oauth2_provider.models import Application

    from apps.pipelines.models import Pipeline
    from apps.processes.models import Process
    from apps.teams.models import TeamClient

    application = Application.objects.get(client_id=client_id)
    team = TeamClient.objects.get(application=application).team
    found = Pipeline.objects.get(name=pipeline)
    version = found.versions.order_by("-number").first()
    now = timezone.now()
    return Process.objects.create(
        id=uuid.UUID(process_id), pipeline=found, pipeline_version=version,
        owner=application.user, application=application, team=team, target=version.target,
        pool=version.pool.name, state="SUCCEEDED", exit_code=0, message="finished",
        admitted_at=now, started_at=now, finished_at=now)


def twin_ids(prefix: str = "abcd") -> list[str]:
    """Two random process ids that both start with ``prefix``."""
    return [prefix + uuid.uuid4().hex[len(prefix):] for _ in range(2)]
