"""Secret env values (promise 7): accepted by POST, kept only sealed, never shown by the API or
the admin, never logged, carried sealed in the job spec and by a re-run; bad ones are a 400
naming the field that creates nothing."""

from __future__ import annotations

import json
import logging

import pytest
from cryptography.fernet import Fernet

from apps.pipelines.models import PipelineVersion
from apps.processes import messaging
from apps.processes.models import Process, ProcessEvent
from apps.processes.selectors import process_list
from apps.processes.services import SECRET_MAX_BYTES, process_rerun
from workers.contract import TASK_SUBMIT, JobSpec
from workers.secrets import unseal

pytestmark = pytest.mark.django_db

PROCESSES = "/api/processes/"
VALUE = "s3cr3t-value-4f1d9c"


@pytest.fixture(autouse=True)
def secrets_key(monkeypatch):
    """A key of this test alone: no key file is written in the checkout."""
    monkeypatch.setenv("ORCH_SECRETS_KEY", Fernet.generate_key().decode())


@pytest.fixture
def declared(pipelines):
    """hello declares two secrets; sleep declares none."""
    PipelineVersion.objects.filter(pipeline__name="hello").update(secrets=["API_TOKEN", "OTHER"])


@pytest.fixture
def sent(monkeypatch):
    """The job specs published, as the broker would get them (args, argsrepr)."""
    messages = []

    def send_task(name, args=None, **options):
        messages.append({"name": name, "args": args, **options})

    monkeypatch.setattr(messaging.app, "send_task", send_task)
    return messages


def post(api, body, **headers):
    return api.post(PROCESSES, body, format="json", **headers)


def test_a_secret_is_accepted_kept_sealed_and_shown_nowhere(
    api, declared, sent, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    body = {"pipeline": "hello", "secrets": {"API_TOKEN": VALUE}}
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, body, HTTP_IDEMPOTENCY_KEY="with-secret")
    assert response.status_code == 201, response.content
    pid = response.json()["id"]
    process = Process.objects.get(pk=pid)
    assert process.secret_env and VALUE not in process.secret_env
    assert unseal(process.secret_env) == {"API_TOKEN": VALUE}

    # Neither the value nor its sealed text in any answer, the replayed POST included.
    answers = [
        response,
        api.get(f"{PROCESSES}{pid}/"),
        api.get(PROCESSES),
        api.get(f"{PROCESSES}{pid}/status/"),
        api.get(f"{PROCESSES}{pid}/events/"),
        post(api, body, HTTP_IDEMPOTENCY_KEY="with-secret"),
    ]
    for answer in answers:
        assert answer.status_code in (200, 201), answer.content
        text = answer.content.decode()
        assert VALUE not in text and process.secret_env not in text
        assert "secret" not in text
    assert answers[-1]["Idempotent-Replayed"] == "true"
    assert Process.objects.count() == 1

    for event in ProcessEvent.objects.filter(process=process):
        assert VALUE not in event.detail
    assert VALUE not in caplog.text and process.secret_env not in caplog.text

    # The job spec on its way to the broker carries it sealed, and the worker's key opens it.
    [message] = sent
    assert message["name"] == TASK_SUBMIT
    assert VALUE not in json.dumps(message["args"]) and VALUE not in message["argsrepr"]
    spec = JobSpec.from_dict(message["args"][0]["body"])  # inside its signed envelope
    assert spec.secret_env == process.secret_env
    assert "API_TOKEN" not in spec.env
    assert unseal(spec.secret_env) == {"API_TOKEN": VALUE}


def test_a_run_without_secrets_has_none(api, declared):
    response = post(api, {"pipeline": "hello"})
    assert response.status_code == 201
    process = Process.objects.get(pk=response.json()["id"])
    assert process.secret_env == ""
    assert messaging.job_spec(process).secret_env == ""


def test_form_encoded_secrets_are_json_text(api, declared):
    response = api.post(PROCESSES, {"pipeline": "hello", "secrets": json.dumps({"OTHER": VALUE})})
    assert response.status_code == 201, response.content
    assert VALUE not in response.content.decode()
    assert unseal(Process.objects.get(pk=response.json()["id"]).secret_env) == {"OTHER": VALUE}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"pipeline": "hello", "secrets": {"NOPE": VALUE}},
         "secrets.NOPE: not declared by the pipeline; it declares API_TOKEN, OTHER."),
        ({"pipeline": "sleep", "secrets": {"API_TOKEN": VALUE}},
         "secrets.API_TOKEN: not declared by the pipeline; it declares no secrets."),
        ({"pipeline": "hello", "secrets": {"API_TOKEN": 12345}},
         "secrets.API_TOKEN: must be a string, not int."),
        ({"pipeline": "hello", "secrets": {"API_TOKEN": {"v": VALUE}}},
         "secrets.API_TOKEN: must be a string, not dict."),
        ({"pipeline": "hello", "secrets": {"API_TOKEN": None}},
         "secrets.API_TOKEN: must be a string, not NoneType."),
        ({"pipeline": "hello", "secrets": {"API_TOKEN": "x" * (SECRET_MAX_BYTES + 1)}},
         f"secrets.API_TOKEN: longer than {SECRET_MAX_BYTES} bytes."),
        ({"pipeline": "hello", "secrets": {"API_TOKEN": f"{VALUE}\0"}},
         "secrets.API_TOKEN: must not contain a NUL character."),
        ({"pipeline": "hello", "secrets": [VALUE]}, "Must be a JSON object"),
        ({"pipeline": "hello", "secrets": VALUE}, "Not valid JSON"),
    ],
)
def test_bad_secrets_are_a_400_naming_them_and_create_nothing(api, declared, body, words):
    response = post(api, body)
    assert response.status_code == 400, response.content
    errors = response.json()["fields"]
    assert list(errors) == ["secrets"], errors
    assert words in " ".join(errors["secrets"]), errors
    assert VALUE not in response.content.decode()
    assert Process.objects.count() == 0


def test_bad_config_and_bad_secrets_are_named_together(api, declared):
    response = post(api, {"pipeline": "hello", "used_config": {"name": ""},
                          "secrets": {"NOPE": VALUE}})
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"used_config", "secrets"}
    assert Process.objects.count() == 0


def test_a_rerun_keeps_the_secrets_sealed(api, declared, admin_user):
    response = post(api, {"pipeline": "hello", "secrets": {"API_TOKEN": VALUE, "OTHER": "b"}})
    # As the API and the admin load it: without the sealed column, which the re-run fetches.
    first = process_list(admin_user).get(pk=response.json()["id"])
    again = process_rerun(first, owner=admin_user)
    assert again.pk != first.pk
    assert again.secret_env == first.secret_env
    assert unseal(messaging.job_spec(again).secret_env) == {"API_TOKEN": VALUE, "OTHER": "b"}


def test_the_admin_shows_neither_the_value_nor_its_sealed_text(api, declared, client, admin_user):
    response = post(api, {"pipeline": "hello", "secrets": {"API_TOKEN": VALUE}})
    process = Process.objects.get(pk=response.json()["id"])
    client.force_login(admin_user)
    for url in ("/admin/processes/process/", f"/admin/processes/process/{process.pk}/change/"):
        page = client.get(url)
        assert page.status_code == 200
        text = page.content.decode()
        assert str(process.pk) in text
        assert VALUE not in text and process.secret_env not in text and "secret_env" not in text
