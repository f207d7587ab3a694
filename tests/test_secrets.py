"""Secret env values (promise 7): accepted by POST, kept only sealed, never shown by the API or
the admin, never logged, carried sealed in the job spec and by a re-run; bad ones are a 400
naming the field that creates nothing. A sealed value opens only for the process and pool it
was sealed for, and a pool's keys open no other pool's secrets."""

from __future__ import annotations

import json
import logging

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError

from apps.pipelines.models import PipelineVersion
from apps.processes import messaging
from apps.processes.models import Process, ProcessEvent
from apps.processes.selectors import process_list
from apps.processes.services import SECRET_MAX_BYTES, process_rerun
from apps.teams.access import Caller
from workers.contract import TASK_SUBMIT, JobSpec
from workers.secrets import SecretsError, pool_keys_text, seal, unseal

pytestmark = pytest.mark.django_db

PROCESSES = "/api/processes/"
VALUE = "s3cr3t-value-4f1d9c"
A, B = "0b6f3c1e-0000-4000-8000-00000000000a", "0b6f3c1e-0000-4000-8000-00000000000b"


@pytest.fixture(autouse=True)
def secrets_key(monkeypatch):
    """A key of this test alone: no key file is written in the checkout."""
    monkeypatch.delenv("ORCH_SECRETS_KEYS", raising=False)
    monkeypatch.delenv("ORCH_POOL_SECRETS_KEYS", raising=False)
    monkeypatch.setenv("ORCH_SECRETS_KEY", Fernet.generate_key().decode())


@pytest.fixture
def declared(pipelines):
    """hello declares two secrets; sleep declares none."""
    PipelineVersion.objects.filter(pipeline__name="hello").update(secrets=["API_TOKEN", "OTHER"])


@pytest.fixture
def sent(monkeypatch, relay_on_wake):
    """The job specs the relay publishes, as the broker would get them (args, argsrepr)."""
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
    assert process.secret_env
    assert VALUE not in process.secret_env
    assert unseal(process.secret_env, process_id=pid, pool="local") == {"API_TOKEN": VALUE}

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
        assert VALUE not in text
        assert process.secret_env not in text
        assert "secret" not in text
    assert answers[-1]["Idempotent-Replayed"] == "true"
    assert Process.objects.count() == 1

    for event in ProcessEvent.objects.filter(process=process):
        assert VALUE not in event.detail
    assert VALUE not in caplog.text
    assert process.secret_env not in caplog.text

    # The job spec on its way to the broker carries it sealed, and the worker's key opens it.
    [message] = sent
    assert message["name"] == TASK_SUBMIT
    assert VALUE not in json.dumps(message["args"])
    assert VALUE not in message["argsrepr"]
    spec = JobSpec.from_dict(message["args"][0]["body"])  # inside its signed envelope
    assert spec.secret_env == process.secret_env
    assert "API_TOKEN" not in spec.env
    assert unseal(spec.secret_env, process_id=spec.process_id, pool=spec.pool) == {
        "API_TOKEN": VALUE}


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
    process = Process.objects.get(pk=response.json()["id"])
    assert opened(messaging.job_spec(process)) == {"OTHER": VALUE}


@pytest.mark.parametrize(
    "body, words",
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


def opened(spec: JobSpec) -> dict[str, str]:
    """The secrets of ``spec``, opened as its worker opens them."""
    return unseal(spec.secret_env, process_id=spec.process_id, pool=spec.pool)


def test_a_rerun_gets_the_secrets_sealed_again_for_itself(api, declared, admin_user):
    response = post(api, {"pipeline": "hello", "secrets": {"API_TOKEN": VALUE, "OTHER": "b"}})
    # As the API and the admin load it: without the sealed column, which the re-run fetches.
    first = process_list(Caller.for_(admin_user)).get(pk=response.json()["id"])
    again = process_rerun(first, owner=admin_user)
    assert again.pk != first.pk
    assert again.secret_env
    assert VALUE not in again.secret_env
    assert again.secret_env != first.secret_env
    assert opened(messaging.job_spec(again)) == {"API_TOKEN": VALUE, "OTHER": "b"}
    assert opened(messaging.job_spec(first)) == {"API_TOKEN": VALUE, "OTHER": "b"}


def test_a_rerun_whose_secrets_no_key_opens_is_refused_naming_them(api, declared, monkeypatch):
    response = post(api, {"pipeline": "hello", "secrets": {"API_TOKEN": VALUE}})
    first = Process.objects.get(pk=response.json()["id"])
    monkeypatch.setenv("ORCH_SECRETS_KEY", Fernet.generate_key().decode())  # the key was lost
    with pytest.raises(ValidationError) as refused:
        process_rerun(first)
    assert "cannot be opened" in refused.value.message_dict["secrets"][0]
    assert VALUE not in str(refused.value)
    assert Process.objects.count() == 1


def test_a_sealed_secret_moved_to_another_process_fails_to_open(api, declared):
    """Copied into another process's row (a database write, a bug), the sealed text travels in
    that process's job spec and its worker refuses it, saying nothing of the value."""
    owner = Process.objects.get(pk=post(api, {"pipeline": "hello",
                                              "secrets": {"API_TOKEN": VALUE}}).json()["id"])
    other = Process.objects.get(pk=post(api, {"pipeline": "hello"}).json()["id"])
    Process.objects.filter(pk=other.pk).update(secret_env=owner.secret_env)
    other.refresh_from_db()
    spec = messaging.job_spec(other)
    assert spec.secret_env == owner.secret_env
    with pytest.raises(SecretsError, match="sealed for another process") as refused:
        opened(spec)
    assert VALUE not in str(refused.value)
    assert opened(messaging.job_spec(owner)) == {"API_TOKEN": VALUE}


def test_a_value_sealed_for_one_process_and_pool_opens_for_no_other():
    sealed = seal({"API_TOKEN": VALUE}, process_id=A, pool="local")
    assert unseal(sealed, process_id=A, pool="local") == {"API_TOKEN": VALUE}
    for process_id, pool, why in [(B, "local", "sealed for another process"),
                                  (A, "docker-main", "cannot be opened .* pool 'docker-main'")]:
        with pytest.raises(SecretsError, match=why) as refused:
            unseal(sealed, process_id=process_id, pool=pool)
        assert VALUE not in str(refused.value)


@pytest.fixture
def worker_with_pool_keys(monkeypatch, tmp_path):
    """worker_with_pool_keys(pool): from now on this process holds only ``pool``'s keys, as
    a worker given ORCH_POOL_SECRETS_KEYS and no master key."""

    def become(pool: str) -> str:
        keys = pool_keys_text(pool)
        for name in ("ORCH_SECRETS_KEY", "ORCH_SECRETS_KEYS"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("ORCH_SECRETS_KEY_FILE", str(tmp_path / "no-master-key-here"))
        monkeypatch.setenv("ORCH_POOL_SECRETS_KEYS", keys)
        return keys

    return become


def test_a_worker_given_only_its_pools_keys_opens_its_pool_and_no_other(
    monkeypatch, worker_with_pool_keys
):
    master = Fernet.generate_key().decode()
    monkeypatch.setenv("ORCH_SECRETS_KEY", master)
    for_local = seal({"API_TOKEN": VALUE}, process_id=A, pool="local")
    for_docker = seal({"API_TOKEN": "docker-only-5e2"}, process_id=B, pool="docker-main")
    keys = worker_with_pool_keys("local")
    assert master not in keys

    assert unseal(for_local, process_id=A, pool="local") == {"API_TOKEN": VALUE}
    for pool in ("docker-main", "local"):  # the other pool's value, claimed for either pool
        with pytest.raises(SecretsError, match="cannot be opened with this worker's keys") as no:
            unseal(for_docker, process_id=B, pool=pool)
        assert "docker-only-5e2" not in str(no.value)
    with pytest.raises(SecretsError, match="sealed for another process"):
        unseal(for_local, process_id=B, pool="local")


def test_a_malformed_or_missing_pool_key_is_named_never_shown(monkeypatch, tmp_path):
    monkeypatch.delenv("ORCH_SECRETS_KEY")
    monkeypatch.setenv("ORCH_SECRETS_KEY_FILE", str(tmp_path / "no-master-key-here"))
    sealed_somewhere = "gAAAAA-not-opened-anyway"
    with pytest.raises(SecretsError, match="no secrets key: set ORCH_POOL_SECRETS_KEYS"):
        unseal(sealed_somewhere, process_id=A, pool="local")
    good = Fernet.generate_key().decode()
    monkeypatch.setenv("ORCH_POOL_SECRETS_KEYS", f"{good},not-a-key-7f3a")
    with pytest.raises(SecretsError, match="key 2 of 2 in ORCH_POOL_SECRETS_KEYS") as bad:
        unseal(sealed_somewhere, process_id=A, pool="local")
    assert "not-a-key-7f3a" not in str(bad.value)
    assert good not in str(bad.value)


def test_the_admin_shows_neither_the_value_nor_its_sealed_text(api, declared, client, admin_user):
    response = post(api, {"pipeline": "hello", "secrets": {"API_TOKEN": VALUE}})
    process = Process.objects.get(pk=response.json()["id"])
    client.force_login(admin_user)
    for url in ("/admin/processes/process/", f"/admin/processes/process/{process.pk}/change/"):
        page = client.get(url)
        assert page.status_code == 200
        text = page.content.decode()
        assert str(process.pk) in text
        assert VALUE not in text
        assert process.secret_env not in text
        assert "secret_env" not in text
