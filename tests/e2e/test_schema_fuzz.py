"""Schemathesis fuzzes every operation of the live OpenAPI schema against the real stack: a
gunicorn web server on the test database, the control consumer and the beat on RabbitMQ, and
a token got from /o/token/ the way a client gets one. Every answer must match the schema
(status code, content type, body, headers), invalid input must be refused with a 4xx, and no
answer may be a 5xx. The run prints how many requests the server answered.

The fuzz has a client of its own (not staff): it sees, and may stop, only the processes it
started itself, and the test stops whatever it left running."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from io import StringIO

import pytest
import requests
from django.core.management import call_command

from apps.processes.models import Process
from apps.processes.services import process_stop
from testbed import parts
from tests.e2e import stack
from workers.contract import is_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

# Test cases per operation and phase: 100 made about 2,200 requests in a minute on two cores.
MAX_EXAMPLES = os.environ.get("ORCH_FUZZ_MAX_EXAMPLES", "100")
# The checks are chosen in the config file, not with --checks: a check named on the command line
# overrides every per-operation setting below.
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",  # input the schema forbids is a 4xx
    "ignored_auth",  # an operation that needs a token refuses a request without one
    "unsupported_method",  # a method the schema does not list is a 405
]
FUZZ_TIMEOUT_S = 600  # 33 operations; a busy 2-core machine took 267 s and more

# A multipart body holds only strings and cannot hold an empty array: schemathesis's "description
# became -371" sends the text "-371" and "became []" sends no description part at all, both valid
# uploads, and it calls the 201 a negative case accepted. The upload's bad inputs are tested one by
# one in tests/test_datasets.py.
CHECKS_ON = "".join(f"{name}.enabled = true\n" for name in CHECKS)
CONFIG = "[checks]\nenabled = false\n" + CHECKS_ON + """
[[operations]]
include-path = "/api/datasets/"
include-method = "POST"
checks.negative_data_rejection.enabled = false
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> int | None:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.RequestException:
        return None


@pytest.fixture
def web(stack_env, control_plane, pipelines):
    """gunicorn serving the test database, as deploy/stack.sh starts it; its base URL."""
    env, run_dir = stack_env
    port = free_port()
    access_log = run_dir / f"web-fuzz-{port}.access.log"
    # No request-line limit: a generated query of 8 KB is refused by gunicorn with an HTML
    # 414 before Django sees it; here Django answers it, as the schema says.
    server = parts.web({**env, "DEBUG": "false"}, run_dir, port, name=f"web-fuzz-{port}",
                       workers=2, threads=4, access_log=access_log,
                       limit_request_line=0).start()
    url = f"http://127.0.0.1:{port}"
    try:
        # A 503 until the control consumer and the beat have sent their first heartbeats.
        stack.wait_until(lambda: answers(f"{url}/api/health/") == 200 or not server.alive(),
                         timeout=90, what="the web server to answer a healthy /api/health/")
        assert server.alive(), server.output()[-3000:]
        yield url, access_log
    finally:
        server.stop()


@pytest.fixture
def fuzz_token(web):
    """A bearer token of a client made for the fuzz alone, from POST /o/token/."""
    url, _ = web
    out = StringIO()
    call_command("create_client", "schema-fuzz", "--format", "json", stdout=out)
    client = json.loads(out.getvalue())
    answer = requests.post(f"{url}/o/token/", data={"grant_type": "client_credentials"},
                           auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert answer.status_code == 200, answer.text
    yield answer.json()["access_token"]
    for process in Process.objects.filter(application__name="schema-fuzz"):
        if not is_terminal(process.state):
            process_stop(process, source="test")  # leave no run of the fuzz behind


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(
        web, fuzz_token, tmp_path, capsys):
    url, access_log = web
    answered_before = len(access_log.read_text().splitlines())
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    done = subprocess.run([
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
        "run", f"{url}/api/schema/",
        "--header", f"Authorization: Bearer {fuzz_token}",
        "--max-examples", MAX_EXAMPLES,
        # One worker: hypothesis parses lambdas' source with ast, which Python 3.11 can get
        # wrong when two threads do it at once ("AST constructor recursion depth mismatch").
        "--workers", "1",
        "--request-timeout", "20",
        "--generation-database", "none",  # nothing written into the checkout
        "--no-color",
    ], cwd=tmp_path, capture_output=True, text=True, timeout=FUZZ_TIMEOUT_S)
    requests_made = len(access_log.read_text().splitlines()) - answered_before
    (access_log.parent / "schemathesis.txt").write_text(done.stdout + done.stderr)
    summary = done.stdout[done.stdout.rfind("SUMMARY"):] if "SUMMARY" in done.stdout else ""
    with capsys.disabled():
        print(f"\nschemathesis: {requests_made} requests answered by the server\n{summary}")
    failures = done.stdout[done.stdout.find("FAILURES"):] if "FAILURES" in done.stdout else ""
    assert done.returncode == 0, (failures or done.stdout)[:30000] + done.stderr[-3000:]
    assert requests_made > 500, f"only {requests_made} requests: did the schema lose routes?"
