"""Every environment variable the code reads is named where a user looks for it: in
env.template (what each one does) and in docker-compose.yml (passed to the parts that read
it), unless it is listed below with the reason it is not. The names come from parsing the
code (tests/settings_names.py), so a new setting that is not documented fails here."""

from __future__ import annotations

import re
from pathlib import Path

from tests.settings_names import env_names, python_files

ROOT = Path(__file__).resolve().parent.parent
# What reads the environment: the control plane's settings (and its entry points) and the
# worker side.
READERS = ["orchestration", "workers"]

# Read, never set by a user: nowhere to name them.
INTERNAL = {
    "DJANGO_SETTINGS_MODULE": "set by the entry points (orchestration/celery.py, wsgi.py)",
    "ORCH_POOL": "set by python -m workers from its --pool",
    "ORCH_TARGET": "set by python -m workers from its --target or the pool's name",
    "ORCH_WORKER_CREDENTIAL_FD": "a worker that starts itself again hands its keys on a pipe",
    "PATH": "the system's; passed on to local jobs",
    "LANG": "the system's; passed on to local and slurm_rest jobs",
    "LC_ALL": "the system's; passed on to local jobs",
    "TZ": "the system's; passed on to local jobs",
    "ORCH_INPUTS": "set by the ECS worker for its stage containers (workers/ecs_stage.py)",
    "ORCH_OUTPUT_PREFIX": "set by the ECS worker for its stage containers (workers/ecs_stage.py)",
}
# Settings of the workers compose does not run: Docker, Slurm and ECS pools run where their
# target is (README "Targets"), configured by their own host's environment or .env.
OTHER_TARGETS = re.compile(r"^(ORCH_SLURM\w*|SLURM_\w+|ORCH_ECS_\w+|DOCKER_HOST)$")
# Settings of what compose runs that it leaves out on purpose: name -> why (none today).
NOT_IN_COMPOSE: dict[str, str] = {}
# Reads whose name is not in the code: what they do, and why that is not a setting.
DYNAMIC = {
    "workers/__main__.py": "deletes the control plane's settings from a worker's environment",
    "workers/environment.py": "copies the .env file's names into the environment",
    "workers/executors/slurm/base.py": "passes the pool's named variables on to sbatch",
    "workers/executors/slurm/settings.py": "the helper setting(settings, key, ENV) itself: its "
                                           "callers' names are read above",
}


def named_in(text: str, name: str) -> bool:
    return re.search(rf"(?<![A-Z0-9_]){name}(?![A-Z0-9_])", text) is not None


def read_names() -> tuple[dict[str, set[Path]], list[str]]:
    return env_names(list(python_files(ROOT, READERS)))


def test_the_parser_finds_the_settings_it_must():
    names, _ = read_names()
    # one of each way the code reads a name: env.str, env.db, os.environ.get, a module
    # constant, a loop over a constant, an f-string over a loop, setting(..., "ENV")
    for name in ("SECRET_KEY", "DATABASE_URL", "ORCH_SIGNING_KEYS", "ORCH_WORKER_CREDENTIAL",
                 "ORCH_S3_ENDPOINT_URL", "ORCH_SLURM_PARTITION", "ORCH_SLURM_USER",
                 "ORCH_POOL_SECRETS_KEYS", "ORCH_BROKER_URL"):
        assert name in names, name


def test_every_read_is_of_a_name_in_the_code_or_explained():
    _, unresolved = read_names()
    unexplained = [where for where in unresolved
                   if str(Path(where.split(":")[0]).relative_to(ROOT)) not in DYNAMIC]
    assert not unexplained, ("the environment read by a name the parser cannot follow: "
                             "name it as a string (or a module constant), or explain it in "
                             "DYNAMIC", unexplained)


def test_env_template_names_every_setting():
    names, _ = read_names()
    template = (ROOT / "env.template").read_text()
    missing = sorted(name for name in names
                     if name not in INTERNAL and not named_in(template, name))
    assert not missing, f"settings the code reads that env.template does not name: {missing}"


def test_the_compose_file_names_every_setting_of_what_it_runs():
    names, _ = read_names()
    compose = (ROOT / "docker-compose.yml").read_text()
    missing = sorted(
        name for name in names
        if name not in INTERNAL and not OTHER_TARGETS.match(name) and name not in NOT_IN_COMPOSE
        and not named_in(compose, name))
    assert not missing, f"settings docker-compose.yml does not name: {missing}"
