"""The README's commands run as written. The "Using the API" block is run verbatim in bash
against a live server, the control consumer, the beat and a local worker; every other command
the README names (scripts, management commands, modules) is checked to exist."""

from __future__ import annotations

import os
import re
import subprocess
from importlib.util import find_spec
from pathlib import Path

import pytest
from django.core.management import get_commands

from apps.processes.models import Process
from apps.processes.services import process_stop
from tests.e2e import stack
from tests.e2e.client import wait_for_end
from workers.contract import State

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def api_block() -> str:
    section = README.split("## Using the API", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)


def named(pattern: str) -> list[str]:
    """What ``pattern``'s group matches in the README: its blocks and its inline code."""
    code = "\n".join(bash_blocks() + re.findall(r"`([^`\n]+)`", README))
    return sorted(set(re.findall(pattern, code)))


@pytest.mark.parametrize("script", named(r"(?<![\w/])(deploy/[\w.-]+\.sh)"))
def test_every_script_the_readme_names_exists(script):
    path = ROOT / script
    assert path.is_file(), f"{script} is not a script"
    assert os.access(path, os.X_OK), f"{script} is not a script"


def test_every_management_command_and_module_the_readme_names_exists():
    commands = named(r"manage\.py (\w+)")
    modules = [m for m in named(r"python3? -m ([\w.]+)") if m not in ("pip", "venv")]
    assert len(commands) >= 3, "did the README's blocks change form?"
    assert len(modules) >= 2, "did the README's blocks change form?"
    missing = [c for c in commands if c not in get_commands()]
    assert not missing, f"manage.py commands that do not exist: {missing}"
    # an installed worker's package is the checkout's workers/ folder
    missing = [m for m in modules
               if not find_spec(m.replace("orchestration_worker", "workers", 1))]
    assert not missing, f"python -m modules that do not exist: {missing}"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_using_the_api_block_runs_as_written(live_server, pipelines, local_worker):
    env = {**os.environ, "ORCH_URL": live_server.url, "DATABASE_URL": stack.database_url()}
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", api_block()], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    runs = {p.pipeline.name: p for p in Process.objects.filter(
        application__name="my-robot")}
    assert set(runs) == {"sleep", "hello"}, done.stdout[-2000:]
    assert runs["sleep"].used_config == {"seconds": 30}
    assert '"state"' in done.stdout  # the status answer was printed
    # the block's last command stopped the hello run; whatever it reached, it ended
    assert wait_for_end(str(runs["hello"].pk)).state in (State.STOPPED, State.SUCCEEDED)
    process_stop(runs["sleep"], source="test")  # leave no 30 s job behind
    assert wait_for_end(str(runs["sleep"].pk)).state == State.STOPPED
