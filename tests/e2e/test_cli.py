"""The ``orch`` command as a user runs it: the installed script (.venv/bin/orch) in a process of
its own, with a home of its own, against the real product through HTTP (gunicorn, PostgreSQL,
RabbitMQ, the control consumer, the beat and a local worker). Exit codes, one-line errors and
the ``--json`` shapes are what scripts rely on."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.client.support import finished_process, new_client, twin_ids, web_server
from tests.e2e.stack import free_port, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

ORCH = Path(sys.executable).with_name("orch")  # the console script the install made


@pytest.fixture(scope="module")
def web(stack_env, control_plane):
    env, run_dir = stack_env
    with web_server(env, run_dir) as (url, _):
        yield url


class Terminal:
    """A user's shell: an empty home (so an empty config dir) and nothing of the test's
    environment; ``login_env`` holds the ORCH_ variables of a new client."""

    def __init__(self, home: Path, login_env: dict[str, str]):
        self.home = home
        self.login_env = login_env
        self.env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8",
                    "XDG_CONFIG_HOME": str(home / ".config"), "NO_PROXY": "127.0.0.1"}

    @property
    def credentials(self) -> Path:
        return self.home / ".config" / "orch" / "credentials.json"

    def orch(self, *argv: str, env: dict[str, str] | None = None, stdin: str | None = None,
             timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run([str(ORCH), *argv], env={**self.env, **(env or {})},
                              input=stdin, capture_output=True, text=True, timeout=timeout)

    def json(self, *argv: str, **kwargs):
        done = self.orch(*argv, "--json", **kwargs)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def start(self, *argv: str, out: Path) -> subprocess.Popen:
        """``orch`` in the background, its standard output in ``out``."""
        with out.open("w") as sink:
            return subprocess.Popen([str(ORCH), *argv], env=self.env, stdout=sink,
                                    stderr=subprocess.PIPE, text=True)


@pytest.fixture
def user(web, local_worker, pipelines, tmp_path):
    client_id, secret = new_client("cli-user")
    home = tmp_path / "home"
    home.mkdir()
    return Terminal(home, {"ORCH_URL": web, "ORCH_CLIENT_ID": client_id,
                           "ORCH_CLIENT_SECRET": secret})


@pytest.fixture
def logged_in(user):
    done = user.orch("login", env=user.login_env)
    assert done.returncode == 0, done.stderr
    return user


def one_line_error(done: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The error's one line, checked: the exit code, no traceback, each of ``words``."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("orch: ")
    for word in words:
        assert word in lines[0]
    return lines[0]


def test_a_whole_session(user):
    login = user.orch("login", env=user.login_env)
    assert login.returncode == 0, login.stderr
    assert f"Logged in to {user.login_env['ORCH_URL']}" in login.stdout
    assert stat.S_IMODE(user.credentials.stat().st_mode) == 0o600
    kept = json.loads(user.credentials.read_text())
    assert kept["client_id"] == user.login_env["ORCH_CLIENT_ID"]
    assert kept["token"]["access_token"]

    # From here on no ORCH_ variable: what login kept is enough.
    done = user.orch("run", "hello", "-c", "name=Ada", "--wait")
    assert done.returncode == 0, done.stderr
    pid, state = done.stdout.split()[:2]
    assert state == "SUCCEEDED"
    ran = user.json("run", "hello", "--wait")
    assert ran["state"] == "SUCCEEDED"
    assert ran["exit_code"] == 0

    listed = user.json("ps")
    assert [p["id"] for p in listed] == [ran["id"], pid]  # newest first
    table = user.orch("ps").stdout
    assert table.split("\n")[0].split() == ["ID", "PIPELINE", "STATE", "AGE", "DURATION",
                                            "POOL", "TEAM"]
    assert pid[:8] in table
    assert "SUCCEEDED" in table

    shown = user.json("status", pid[:6])
    assert shown["id"] == pid
    assert shown["used_config"] == {"name": "Ada"}
    assert "Hello, Ada!" in user.orch("logs", pid[:6]).stdout
    chunks = [json.loads(line) for line in
              user.orch("logs", pid, "--json").stdout.splitlines()]
    assert "Hello, Ada!" in "".join(c["text"] for c in chunks)
    assert [e["to"] for e in user.json("events", pid[:8])][-1] == "SUCCEEDED"

    assert "seconds" in user.orch("pipelines", "sleep").stdout
    assert "hello" in [p["name"] for p in user.json("pipelines")]
    assert [t["slug"] for t in user.json("teams")] == ["cli-user"]

    assert user.json("queue", "local") == []  # nothing waits
    # Every command used the token login kept: none asked for another.
    assert json.loads(user.credentials.read_text())["token"] == kept["token"]

    again = user.json("rerun", pid[:8], "--wait")
    assert (again["state"], again["used_config"]) == ("SUCCEEDED", {"name": "Ada"})

    failed = user.orch("run", "fail", "-c", "exit_code=3", "--wait")
    assert failed.returncode == 1  # scripts can chain on it
    assert "FAILED" in failed.stdout
    assert "(exit 3)" in failed.stdout


def test_pools_show_the_live_worker(logged_in):
    wait_until(lambda: {p["name"]: p for p in logged_in.json("pools")}["local"]["status"]
               == "up", 30, what="the local worker's heartbeat")
    local = {p["name"]: p for p in logged_in.json("pools")}["local"]
    assert {"target", "capacity", "running", "waiting", "paused"} <= set(local)
    header, *rows = logged_in.orch("pools").stdout.strip().splitlines()
    assert header.split() == ["POOL", "TARGET", "STATUS", "WORKERS", "CAPACITY", "RUNNING",
                              "WAITING", "PAUSED"]
    assert any(row.split()[:4] == ["local", "local", "up", "1"] for row in rows)


def test_logs_follow_ends_when_another_process_stops_the_run(logged_in, tmp_path):
    started = logged_in.orch("run", "sleep", "-c", "seconds=120", "-q")
    assert started.returncode == 0, started.stderr
    pid = started.stdout.strip()
    out = tmp_path / "follow.out"
    follower = logged_in.start("logs", "-f", pid[:8], out=out)
    try:
        wait_until(lambda: "slept 1 of 120 s" in out.read_text(), 30, what="followed lines")
        stopped = logged_in.orch("stop", pid[:8])  # from a second process
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.split()[0] == pid
        _, stderr = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == 1
    assert "STOPPED" in stderr
    assert "slept 0 of 120 s\nslept 1 of 120 s\n" in out.read_text()
    assert logged_in.json("status", pid)["state"] == "STOPPED"


def test_errors_are_one_line_with_an_exit_code_of_their_kind(user):
    one_line_error(user.orch("ps"), 4, "not logged in")
    wrong = {**user.login_env, "ORCH_CLIENT_SECRET": "not-the-secret"}
    one_line_error(user.orch("login", env=wrong), 4, "refused the client id or secret")
    assert not user.credentials.exists()
    one_line_error(user.orch("ps", env=wrong), 4, "refused")
    nowhere = {**user.login_env, "ORCH_URL": f"http://127.0.0.1:{free_port()}"}
    one_line_error(user.orch("ps", env=nowhere), 5, "cannot reach")

    env = user.login_env
    one_line_error(user.orch("status", "0000", env=env), 3, "'0000'")
    one_line_error(user.orch("status", "xyz1", env=env), 6, "id_prefix")
    one_line_error(user.orch("run", "sleep", "-c", "seconds=ten", env=env), 6,
                   "used_config.seconds")
    one_line_error(user.orch("run", "no-such", env=env), 6, "pipeline")
    one_line_error(user.orch("pipelines", "no-such", env=env), 3)
    one_line_error(user.orch("run", "hello", "-c", "name", env=env), 2, "KEY=VALUE")
    assert user.orch("status", env=env).returncode == 2  # typer's usage error

    first, second = twin_ids("abcd")
    finished_process(first, env["ORCH_CLIENT_ID"])
    finished_process(second, env["ORCH_CLIENT_ID"])
    line = one_line_error(user.orch("status", "abcd", env=env), 2, "ambiguous")
    assert first[:8] in line
    assert second[:8] in line
    assert user.json("status", first[:12], env=env)["state"] == "SUCCEEDED"


def test_a_config_from_a_file_with_values_over_it(logged_in, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("name: from-file\nnested: {keep: 1}\n")
    ran = logged_in.json("run", "hello", "--config-file", str(config), "-c", "nested.extra=[1,2]",
                         "-c", "flag=true", "-c", "count=3", "-c", "text=3x")
    assert ran["used_config"] == {"name": "from-file", "nested": {"keep": 1, "extra": [1, 2]},
                                  "flag": True, "count": 3, "text": "3x"}
    piped = logged_in.json("run", "hello", "--config-file", "-", stdin='{"name": "stdin"}')
    assert piped["used_config"] == {"name": "stdin"}
    one_line_error(logged_in.orch("run", "hello", "--config-file", "-", stdin="[1, 2]"), 2,
                   "must hold an object")


def test_ps_watch_runs_until_interrupted(logged_in, tmp_path):
    pid = logged_in.orch("run", "hello", "-q").stdout.strip()
    out = tmp_path / "watch.out"
    watcher = logged_in.start("ps", "--watch", out=out)
    try:
        time.sleep(4)  # a refresh or two
        assert watcher.poll() is None, "the watch ended by itself"
        watcher.send_signal(signal.SIGINT)
        watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 0
    assert pid[:8] in out.read_text()


def test_run_on_a_file_then_fetch_its_outputs(logged_in, tmp_path):
    """`orch run --dataset field=FILE` uploads the file and runs on it; `orch outputs
    --download` fetches what the job wrote: checksum's result.json names the file's digest."""
    data = tmp_path / "words.txt"
    data.write_text("one two two\nthree three three\n")
    digest = hashlib.sha256(data.read_bytes()).hexdigest()

    ended = logged_in.json("run", "checksum", "--dataset", f"input={data}", "--wait")

    assert ended["state"] == "SUCCEEDED", ended
    [used] = ended["datasets"]
    assert (used["field"], used["sha256"]) == ("used_config.input", digest)
    assert used["id"] in [d["id"] for d in logged_in.json("datasets")]
    listed = logged_in.json("outputs", ended["id"][:8])
    assert [o["path"] for o in listed] == ["result.json"]
    folder = tmp_path / "results"
    done = logged_in.orch("outputs", ended["id"][:8], "--download", str(folder))
    assert done.returncode == 0, done.stderr
    result = json.loads((folder / "result.json").read_text())
    assert result["sha256"] == digest
    assert result["top_words"][0] == ["three", 3]
    again = logged_in.json("run", "checksum", "--dataset", f"input={used['id']}", "--wait")
    assert again["datasets"][0]["id"] == used["id"]  # an id is used as it is, not uploaded
