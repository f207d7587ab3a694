"""Pipeline files: loaded, versioned on edit, broken ones reported by name while the others
load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from apps.pipelines.models import Pipeline, PipelineVersion
from apps.pipelines.services import pipelines_load
from apps.processes.services import process_create

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
    assert "broken.yaml" in err and "wrongtarget.yaml" in err


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
    assert old.pipeline_version.number == 1 and old.used_config == {"name": "world"}
    assert new.pipeline_version.number == 2 and new.used_config == {"name": "everyone"}
    assert pipelines_load(folder).loaded == []  # unchanged again: no new version


def test_a_removed_file_retires_the_pipeline(folder):
    pipelines_load(folder)
    (folder / "sleep.yaml").unlink()
    report = pipelines_load(folder)
    assert report.retired == ["sleep"]
    assert not Pipeline.objects.get(name="sleep").active
    assert PipelineVersion.objects.filter(pipeline__name="sleep").exists()
