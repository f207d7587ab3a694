"""A withdrawn pipeline version starts no new run, yet stays listed for the runs that used it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from apps.pipelines.models import PipelineVersion
from apps.pipelines.services import pipeline_versions_withdraw, pipelines_load
from apps.processes.services import process_rerun

pytestmark = pytest.mark.django_db

PROCESSES = "/api/processes/"
VERSIONS = "/admin/pipelines/pipelineversion/"


@pytest.fixture
def hello_v1_and_v2(tmp_path, db):
    """``hello`` loaded twice: v1 greets the world, v2 (an edit of the file) everyone."""
    shutil.copytree(Path(settings.PIPELINES_DIR) / "pools", tmp_path / "pools")
    hello = tmp_path / "hello.yaml"
    shutil.copy(Path(settings.PIPELINES_DIR) / "hello.yaml", hello)
    pipelines_load(tmp_path)
    hello.write_text(hello.read_text().replace("name: world", "name: everyone"))
    assert pipelines_load(tmp_path).loaded == ["hello v2"]
    return tmp_path


def withdraw(number: int, withdrawn: bool = True) -> None:
    versions = PipelineVersion.objects.filter(pipeline__name="hello", number=number)
    assert pipeline_versions_withdraw(versions, withdrawn=withdrawn) == 1


def post(api, **body):
    return api.post(PROCESSES, {"used_config": {}, **body}, format="json")


@pytest.fixture
def api(make_client, hello_v1_and_v2):
    return make_client("alice")[1]


def test_a_withdrawn_version_pinned_is_a_400_naming_version(api):
    withdraw(1)
    response = post(api, pipeline="hello", version=1)
    assert response.status_code == 400
    message = " ".join(response.json()["version"])
    assert "Version 1 of pipeline 'hello' is withdrawn" in message
    assert "Runnable versions: 2" in message
    assert post(api, pipeline="hello", version=2).status_code == 201


def test_without_a_version_the_latest_not_withdrawn_runs(api):
    withdraw(2)
    response = post(api, pipeline="hello")
    assert response.status_code == 201, response.json()
    assert response.json()["pipeline_version"] == 1
    assert response.json()["used_config"] == {"name": "world"}  # v1's defaults


def test_every_version_withdrawn_is_a_400_naming_pipeline(api):
    withdraw(1)
    withdraw(2)
    response = post(api, pipeline="hello")
    assert response.status_code == 400
    assert "Every version of pipeline 'hello' is withdrawn" in response.json()["pipeline"][0]
    withdraw(1, withdrawn=False)  # restored: runnable again
    assert post(api, pipeline="hello").json()["pipeline_version"] == 1


def test_a_withdrawn_version_is_still_listed_and_its_processes_keep_it(api):
    first = post(api, pipeline="hello").json()
    assert first["pipeline_version"] == 2
    withdraw(2)
    detail = api.get("/api/pipelines/hello/").json()
    assert {v["number"]: v["withdrawn"] for v in detail["versions"]} == {2: True, 1: False}
    # The pipeline is shown as a new run would use it: v1, runnable.
    assert detail["version"] == 1
    assert detail["withdrawn"] is False
    assert detail["defaults"] == {"name": "world"}
    process = api.get(f"{PROCESSES}{first['id']}/").json()
    assert process["pipeline_version"] == 2
    assert process["used_config"] == {"name": "everyone"}


def test_a_re_run_of_a_withdrawn_version_is_refused(api, admin_user):
    from apps.processes.models import Process

    first = Process.objects.get(pk=post(api, pipeline="hello").json()["id"])
    withdraw(2)
    with pytest.raises(ValidationError) as refused:
        process_rerun(first)
    assert "is withdrawn" in refused.value.message_dict["version"][0]
    assert Process.objects.count() == 1


def test_the_admin_withdraws_and_restores_a_version(client, admin_user, api):
    client.force_login(admin_user)
    v2 = PipelineVersion.objects.get(pipeline__name="hello", number=2)
    page = client.post(VERSIONS, {"action": "withdraw", "_selected_action": [v2.pk]},
                       follow=True).content.decode()
    assert "Withdrew 1 version(s)" in page
    assert post(api, pipeline="hello").json()["pipeline_version"] == 1
    client.post(VERSIONS, {"action": "restore", "_selected_action": [v2.pk]})
    assert post(api, pipeline="hello").json()["pipeline_version"] == 2
