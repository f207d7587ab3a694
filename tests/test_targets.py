"""The table of target facts (``workers.contract.TARGET_TABLE``) and what derives from it: the
target names, the executors' registry, the models' choices, and what a job may ask of each
target, refused when its pipeline loads (tests/test_pipelines.py) and again by every executor
before it starts a job."""

from __future__ import annotations

import pytest

from apps.pipelines.models import TARGET_CHOICES
from workers.contract import HOST_BOUND_TARGETS, TARGETS, JobSpec, job_refusals
from workers.executors import EXECUTORS
from workers.executors.base import Executor, ExecutorError, Submission


def test_every_list_of_targets_derives_from_the_table():
    assert TARGETS == ("local", "docker", "slurm", "slurm_rest", "ecs")
    assert tuple(EXECUTORS) == TARGETS
    assert [kind for kind, _ in TARGET_CHOICES] == list(TARGETS)
    assert sorted(HOST_BOUND_TARGETS) == ["docker", "local"]


@pytest.mark.parametrize("target, job, said", [
    ("local", {"image": "busybox", "command": ["id"]},
     ["the local target cannot run image 'busybox'; use target docker"]),
    ("local", {}, ["the pipeline names no command or script"]),
    ("slurm", {"image": "busybox", "script": "id"},
     ["the Slurm targets cannot run image 'busybox'; use target docker or ecs"]),
    ("slurm_rest", {}, ["the pipeline names no command or script"]),
    ("docker", {"command": ["id"]}, ["the docker target needs run.image in the pipeline"]),
    ("ecs", {}, ["the ecs target needs run.image in the pipeline",
                 "the pipeline names no command or script"]),
    ("mainframe", {"command": ["id"]},
     ["unknown target 'mainframe'; known: local, docker, slurm, slurm_rest, ecs"]),
])
def test_what_a_target_cannot_run_is_named(target, job, said):
    asked = {"image": None, "script": None, "command": None, **job}
    assert job_refusals(target, **asked) == said


@pytest.mark.parametrize("target, job", [
    ("local", {"command": ["id"]}),
    ("local", {"script": "id"}),
    ("slurm", {"command": ["id"]}),
    ("slurm_rest", {"script": "#!/bin/sh\nid"}),
    ("docker", {"image": "busybox"}),  # the image's own command
    ("docker", {"image": "busybox", "script": "id"}),
    ("ecs", {"image": "busybox", "command": ["id"]}),
])
def test_what_a_target_runs_is_not_refused(target, job):
    assert job_refusals(target, **{"image": "", "script": "", "command": [], **job}) == []


class RecordingTarget(Executor):
    """A local-kind target that records what it was asked."""

    target = "local"

    def __init__(self):
        super().__init__("local")
        self.asked: list[str] = []

    def find(self, spec):
        self.asked.append("find")

    def start(self, spec):
        self.asked.append("start")
        return Submission("h1")

    def statuses(self, items):
        raise AssertionError("not used")

    def cancel(self, handle):
        raise AssertionError("not used")

    def read_log(self, item, limit):
        raise AssertionError("not used")


def spec(**run) -> JobSpec:
    return JobSpec(process_id="p1", pipeline="p", version=1, target="local", pool="local", **run)


def test_a_job_its_target_cannot_run_fails_for_good_before_the_target_is_asked():
    executor = RecordingTarget()
    with pytest.raises(ExecutorError) as raised:
        executor.submit(spec(image="busybox", command=["id"]))
    assert raised.value.permanent
    assert str(raised.value) == "the local target cannot run image 'busybox'; use target docker"
    assert executor.asked == []
    assert executor.submit(spec(command=["id"])).handle == "h1"
    assert executor.asked == ["find", "start"]


def test_who_opens_a_jobs_secrets_is_a_fact_of_its_target():
    class SlurmKind(RecordingTarget):
        target = "slurm"

    assert RecordingTarget().opens_secrets is False
    assert SlurmKind().opens_secrets is True


def test_the_control_plane_imports_no_executor():
    """Targets are named once, in the contract: apps/ and orchestration/ read what they need
    there (and in workers' shared modules), never in workers/executors."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    found = []
    for folder in ("apps", "orchestration"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                         else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                found += [f"{path.relative_to(root)}: {n}" for n in names
                          if n.startswith("workers.executors")]
    assert found == []
