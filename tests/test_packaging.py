"""The wheel installs the worker and the user's client, under names nobody else owns.

``pip install orchestration`` would fetch an unrelated project from PyPI, and top-level
``apps``/``orchestration``/``workers``/``client`` packages collide with anything: the
distribution is ``orchestration-service`` and its import packages are ``orchestration_worker``
and ``orchestration_client`` (with the ``orch`` command). Neither needs Django."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.work_roots import reachable_work_root

ROOT = Path(__file__).resolve().parents[1]
# Each import package of the wheel and the folder of the checkout it is made from.
PACKAGES = {"orchestration_worker": "workers", "orchestration_client": "client"}

# Run from outside the checkout: the installed worker must need nothing of it, nor Django.
SMOKE = """
import sys, time, uuid
from pathlib import Path

import orchestration_worker.contract as contract
from orchestration_worker.executors import EXECUTORS
from orchestration_worker.executors.local import LocalExecutor

assert contract.__file__.startswith(sys.argv[1]), contract.__file__
assert EXECUTORS["local"].startswith("orchestration_worker."), EXECUTORS
for name in ("workers", "apps", "orchestration"):
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(f"{name} is importable outside the checkout")

# The local runner is started as a module of this package, not of the checkout's workers.
executor = LocalExecutor("local", {"work_root": sys.argv[2]})
spec = contract.JobSpec(process_id=str(uuid.uuid4()), pipeline="hello", version=1,
                        target="local", pool="local", command=["/bin/echo", "hello"])
handle = executor.submit(spec).handle
item = contract.PollItem(process_id=spec.process_id, handle=handle)
deadline = time.monotonic() + 15
while (status := executor.statuses([item])[handle]).state != contract.State.SUCCEEDED:
    assert time.monotonic() < deadline and status.state != contract.State.FAILED, status
    time.sleep(0.2)
assert "django" not in sys.modules, "the worker pulled in Django"
print("smoke ok")
"""

# A fresh host has only what the wheel declares (and the extra of sys.argv[1], if any): hide
# every other distribution of the venv (optional imports, like kombu's of Django, then fall
# back) and load what sys.argv[2] names: what a worker, or the `orch` command, loads.
FRESH_HOST = """
import importlib, re, sys
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

def wanted(requirement, extra):
    return "extra ==" not in requirement or (extra and f'extra == "{extra}"' in requirement)

declared, todo, extra = set(), ["orchestration-service"], sys.argv[1]
while todo:
    name = norm(todo.pop())
    if name in declared:
        continue
    declared.add(name)
    try:
        requires = distribution(name).requires or []
    except PackageNotFoundError:
        continue
    todo += [re.match(r"[A-Za-z0-9._-]+", r)[0] for r in requires if wanted(r, extra)]
    extra = ""  # the extra is the project's own, not its dependencies'
hidden = {top: owners for top, owners in packages_distributions().items()
          if not any(norm(owner) in declared for owner in owners)}

class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(
                f"{name} ({', '.join(hidden[name.split('.')[0]])}) is not a dependency "
                "of orchestration-service", name=name)

sys.meta_path.insert(0, Hide())
for module in sys.argv[2].split(","):
    importlib.import_module(module)
for banned in ("django", "rest_framework") + (("celery", "kombu") if sys.argv[1] == "cli" else ()):
    assert banned not in sys.modules, f"{banned} was imported"
print("fresh host ok")
"""
WORKER_MODULES = "orchestration_worker.__main__,orchestration_worker.tasks"
CLIENT_MODULES = "orchestration_client,orchestration_client.cli"


def _needs_isolation() -> bool:
    """Build in the venv when its setuptools meets pyproject's floor, else in pip's isolated env."""
    try:
        from setuptools import __version__
    except ImportError:
        return True
    return int(__version__.split(".")[0]) < 77


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Build from a copy: an in-tree build leaves build/ and egg-info in the checkout.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in PACKAGES.values():
        shutil.copytree(ROOT / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    argv = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)]
    if not _needs_isolation():
        argv.append("--no-build-isolation")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("*.whl")
    return built


def test_the_distribution_is_orchestration_service(wheel):
    assert wheel.name == "orchestration_service-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read("orchestration_service-0.1.0.dist-info/METADATA").decode()
    assert "\nName: orchestration-service\n" in metadata


def test_the_cli_extra_installs_neither_django_nor_celery(wheel):
    """`pip install '.[cli]'` on a laptop: the client's own few, nothing of the broker."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read("orchestration_service-0.1.0.dist-info/METADATA").decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    for_cli = {re.match(r"[A-Za-z0-9._-]+", r)[0].lower() for r in requires
               if "extra ==" not in r or 'extra == "cli"' in r}
    assert for_cli == {"typer", "rich", "requests", "pyyaml"}
    for_worker = {re.match(r"[A-Za-z0-9._-]+", r)[0].lower() for r in requires
                  if 'extra == "worker"' in r}
    assert {"celery", "kombu", "cryptography"} <= for_worker
    assert "django" not in for_worker


def test_the_import_packages_are_orchestration_worker_and_client(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == set(PACKAGES)
    assert "orchestration_worker/executors/local_runner.py" in names
    assert "orchestration_client/cli/__init__.py" in names


@pytest.mark.parametrize("package, folder", PACKAGES.items())
def test_the_wheel_holds_every_module_of_the_worker_and_the_client(wheel, package, folder):
    """A package of workers/ left out of pyproject's list would install a worker without
    that target (its executor found by no import); the same for client/."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    source = ROOT / folder
    modules = {f"{package}/{path.relative_to(source).as_posix()}"
               for path in source.rglob("*.py") if "__pycache__" not in path.parts}
    assert modules - names == set()


def test_the_wheel_installs_the_orch_command_with_its_own_extra(wheel):
    with zipfile.ZipFile(wheel) as archive:
        entry_points = archive.read("orchestration_service-0.1.0.dist-info/entry_points.txt")
        metadata = archive.read("orchestration_service-0.1.0.dist-info/METADATA").decode()
    assert "[console_scripts]\norch = orchestration_client.cli:main" in entry_points.decode()
    assert "Provides-Extra: cli" in metadata
    cli_needs = {re.match(r"Requires-Dist: ([A-Za-z0-9._-]+)", line)[1].lower()
                 for line in metadata.splitlines()
                 if line.startswith("Requires-Dist:") and 'extra == "cli"' in line}
    assert cli_needs == {"typer", "rich", "requests", "pyyaml"}


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """(python argv, env, cwd, target): the wheel installed into a folder of its own, run from
    outside the checkout with the venv's site-packages for the dependencies. -S skips the
    venv's .pth files, so its editable install of this project stays out."""
    base = tmp_path_factory.mktemp("installed")
    target = base / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(wheel)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ORCH_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])
    return [sys.executable, "-S"], env, elsewhere, target


def _run(installed, *argv: str) -> subprocess.CompletedProcess:
    python, env, cwd, _ = installed
    return subprocess.run([*python, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=30)


def test_the_installed_worker_starts_as_orchestration_worker(installed):
    done = _run(installed, "-m", "orchestration_worker", "--help")
    assert done.returncode == 0, done.stderr
    assert "python -m orchestration_worker" in done.stdout


def test_the_installed_worker_needs_nothing_of_the_checkout_nor_django(installed):
    work_root = reachable_work_root()  # the job's own user passes through it
    try:
        done = _run(installed, "-c", SMOKE, str(installed[3]), str(work_root / "work"))
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke ok" in done.stdout


def test_the_installed_worker_imports_only_what_it_declares(installed):
    done = _run(installed, "-c", FRESH_HOST, "worker", WORKER_MODULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fresh host ok" in done.stdout


def test_the_installed_client_imports_only_its_extra_and_no_django(installed):
    """A laptop with `pip install '.[cli]'` has the client and the command: no Django, no
    Celery, nothing the cli extra does not declare."""
    done = _run(installed, "-c", FRESH_HOST, "cli", CLIENT_MODULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fresh host ok" in done.stdout


def test_the_installed_orch_command_starts(installed):
    done = _run(installed, "-m", "orchestration_client", "--help")
    assert done.returncode == 0, done.stderr
    for command in ("login", "run", "ps", "logs", "stop", "pools"):
        assert command in done.stdout
