"""Pipeline files: loaded, versioned on edit, broken ones reported by name while the others
load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from apps.pipelines.models import Pipeline, PipelineVersion, Pool
from apps.pipelines.services import pipelines_load
from apps.processes.services import process_create
from workers.executors import EXECUTORS
from workers.pool_settings import ALLOWED, settings_errors

pytestmark = pytest.mark.django_db


@pytest.fixture
def folder(tmp_path):
    shutil.copytree(Path(settings.PIPELINES_DIR) / "pools", tmp_path / "pools")
    for name in ("hello", "sleep"):
        shutil.copy(Path(settings.PIPELINES_DIR) / f"{name}.yaml", tmp_path)
    return tmp_path


def test_every_shipped_pipeline_loads():
    report = pipelines_load()
    assert report.errors == {}
    assert {"hello v1", "sleep v1", "fail v1", "checksum v1"} <= set(report.loaded)


def test_a_broken_file_is_reported_by_name_and_the_others_load(folder, capsys):
    (folder / "broken.yaml").write_text("name: broken\ntarget: local\npool: local\nrun: [oops\n")
    (folder / "wrongtarget.yaml").write_text(
        "name: wrongtarget\ntarget: mainframe\npool: local\nrun: {command: [true]}\n")
    (folder / "badschema.yaml").write_text(
        "name: badschema\ntarget: local\npool: local\nrun: {command: [true]}\n"
        "config_schema: {type: object, properties: {n: {type: integer}}}\ndefaults: {n: x}\n")
    (folder / "shell.yaml").write_text(
        "name: shell\ntarget: local\npool: local\nrun: {command: 'rm -rf /'}\n")
    report = pipelines_load(folder)
    assert set(report.loaded) == {"hello v1", "sleep v1"}
    assert "not valid YAML" in report.errors["broken.yaml"]
    assert "mainframe" in report.errors["wrongtarget.yaml"]
    assert "defaults do not match" in report.errors["badschema.yaml"]
    assert "not a shell string" in report.errors["shell.yaml"]

    call_command("load_pipelines", "--dir", str(folder))
    err = capsys.readouterr().err
    assert "broken.yaml" in err
    assert "wrongtarget.yaml" in err


@pytest.mark.parametrize("target, pool, run, said", [
    ("local", "local", "{image: orchestration/busybox, command: [id]}",
     "run: the local target cannot run image 'orchestration/busybox'; use target docker"),
    ("slurm", "slurm-main", "{image: orchestration/busybox, script: 'hostname'}",
     "run: the Slurm targets cannot run image 'orchestration/busybox'; use target docker or ecs"),
    ("docker", "docker-main", "{command: [id]}", "run: the docker target needs run.image"),
    ("ecs", "ecs-spot", "{image: orchestration/busybox}",
     "run: the pipeline names no command or script"),
])
def test_a_pipeline_asking_its_target_for_what_it_cannot_do_is_refused_when_it_loads(
        folder, capsys, target, pool, run, said):
    (folder / "cannot.yaml").write_text(f"name: cannot\ntarget: {target}\npool: {pool}\n"
                                        f"run: {run}\n")
    report = pipelines_load(folder)
    assert report.errors["cannot.yaml"].startswith(said)
    assert set(report.loaded) == {"hello v1", "sleep v1"}  # the others still load
    assert not Pipeline.objects.filter(name="cannot").exists()
    call_command("load_pipelines", "--dir", str(folder))
    err = capsys.readouterr().err
    assert f"cannot.yaml: {said}" in err


def test_every_refusal_is_named_at_once(folder):
    (folder / "cannot.yaml").write_text(
        "name: cannot\ntarget: local\npool: local\nrun: {image: busybox}\n")
    assert pipelines_load(folder).errors["cannot.yaml"] == (
        "run: the local target cannot run image 'busybox'; use target docker; "
        "the pipeline names no command or script")


def test_an_edited_file_is_a_new_version_and_old_processes_keep_theirs(folder, admin_user):
    pipelines_load(folder)
    old, _ = process_create(pipeline="hello", used_config={}, owner=admin_user)
    hello = folder / "hello.yaml"
    hello.write_text(hello.read_text().replace("name: world", "name: everyone"))
    report = pipelines_load(folder)
    assert report.loaded == ["hello v2"]
    assert "sleep v1" in report.unchanged
    new, _ = process_create(pipeline="hello", used_config={}, owner=admin_user)
    old.refresh_from_db()
    assert old.pipeline_version.number == 1
    assert old.used_config == {"name": "world"}
    assert new.pipeline_version.number == 2
    assert new.used_config == {"name": "everyone"}
    assert pipelines_load(folder).loaded == []  # unchanged again: no new version


def test_a_removed_file_retires_the_pipeline(folder):
    pipelines_load(folder)
    (folder / "sleep.yaml").unlink()
    report = pipelines_load(folder)
    assert report.retired == ["sleep"]
    assert not Pipeline.objects.get(name="sleep").active
    assert PipelineVersion.objects.filter(pipeline__name="sleep").exists()


@pytest.mark.parametrize("settings_yaml, named", [
    ("{docker_host: 'tcp://127.0.0.1:9'}", "settings.docker_host: not a setting of target local"),
    ("{work_root: [a, b]}", "settings.work_root: must be a file system path"),
])
def test_a_pool_with_an_unknown_or_mistyped_setting_is_refused_by_name(folder, settings_yaml,
                                                                       named, capsys):
    (folder / "pools" / "rogue.yaml").write_text(
        f"name: rogue\ntarget: local\nsettings: {settings_yaml}\n")
    report = pipelines_load(folder)
    assert named in report.errors["pools/rogue.yaml"]
    assert "local" in report.pools  # the others still load
    assert "rogue" not in report.pools
    assert not Pool.objects.filter(name="rogue").exists()
    call_command("load_pipelines", "--dir", str(folder))
    err = capsys.readouterr().err
    assert "rogue.yaml" in err
    assert "settings." in err


@pytest.mark.parametrize("target, settings, named", [
    ("docker", {"docker_host": "tcp://evil:2375/?x=1"}, "docker_host"),
    ("docker", {"docker_host": "unix://host/docker.sock"}, "docker_host"),
    ("docker", {"user": "root; id"}, "user"),
    ("docker", {"allow_root": "yes"}, "allow_root"),
    ("docker", {"stop_grace_s": True}, "stop_grace_s"),
    ("slurm_rest", {"url": "http://user:pw@127.0.0.1:6820"}, "url"),
    ("slurm_rest", {"url": "file:///etc/passwd"}, "url"),
    ("slurm_rest", {"command_timeout_s": 10}, "command_timeout_s"),  # only sbatch runs commands
    ("slurm", {"partition": "main\n#SBATCH --uid=0"}, "partition"),
    ("ecs", {"endpoint_url": "ftp://listener"}, "endpoint_url"),
    ("ecs", {"aws_secret_access_key": "x"}, "aws_secret_access_key"),
    ("ecs", {"capacity_provider_strategy": [{"capacity_provider": "FARGATE", "weight": "a"}]},
     "capacity_provider_strategy"),
])
def test_the_allow_list_refuses_bad_settings(target, settings, named):
    [error] = settings_errors(target, settings)
    assert error.startswith(f"settings.{named}:")


def test_the_allow_list_covers_every_target_and_accepts_good_settings():
    assert set(ALLOWED) == set(EXECUTORS)
    assert settings_errors("docker", {
        "docker_host": "unix:///run/podman/podman.sock", "user": "65534:65534",
        "allow_root": False, "api_version": "1.41", "network": "none", "work_root": None}) == []
    assert settings_errors("docker", {"docker_host": "ssh://ops@build-1:22"}) == []
    assert settings_errors("slurm_rest", {"url": "https://slurm.example.org/rest",
                                          "user": "orch", "job_path": "/usr/bin:/bin"}) == []
    assert settings_errors("ecs", {"endpoint_url": "http://127.0.0.1:5000",
                                   "log_reads_per_poll": None, "launch_type": "FARGATE"}) == []


def test_a_pipeline_may_ask_for_root_and_nothing_else_and_its_runs_carry_it(tmp_path, db):
    from apps.pipelines.definitions import DefinitionError, parse_pipeline

    base = ("name: as-root\ntarget: docker\npool: docker-main\n"
            "run: {image: orchestration/busybox, command: [id], user: %s}\n")
    (tmp_path / "as-root.yaml").write_text(base % "root")
    assert parse_pipeline(tmp_path / "as-root.yaml").run["user"] == "root"
    (tmp_path / "as-root.yaml").write_text(base % "alice")
    with pytest.raises(DefinitionError, match=r"run\.user"):
        parse_pipeline(tmp_path / "as-root.yaml")
    # a pipeline that asks nothing keeps the definition (and digest) it always had
    (tmp_path / "as-root.yaml").write_text(base.replace(", user: %s", ""))
    assert "user" not in parse_pipeline(tmp_path / "as-root.yaml").run


def test_a_job_spec_carries_the_user_its_pipeline_asks_for(pipelines):
    from apps.processes.messaging import job_spec

    process, _ = process_create(pipeline="hello-docker", used_config={})
    assert job_spec(process).user == ""
    version = process.pipeline_version
    version.run = {**version.run, "user": "root"}
    version.save(update_fields=["run"])
    process.refresh_from_db()
    assert job_spec(process).user == "root"
