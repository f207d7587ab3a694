"""Key rotation (ORCH_SECRETS_KEYS, newest first): what an older key sealed still opens, the
newest key seals, ``rotate_secrets`` re-seals the stored secrets so the old key can go, and a
re-run of an old process still gets its secrets to the job."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from apps.pipelines.models import PipelineVersion
from apps.processes import messaging
from apps.processes.models import Process
from apps.processes.services import process_create, process_rerun
from workers.contract import State
from workers.secrets import SecretsError, seal, unseal

pytestmark = pytest.mark.django_db

VALUE = "rotated-s3cr3t-77aa"
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def keys(monkeypatch):
    """keys("NEW,OLD"): the keys every side reads from now on."""
    monkeypatch.delenv("ORCH_SECRETS_KEY", raising=False)

    def use(*newest_first: str) -> None:
        monkeypatch.setenv("ORCH_SECRETS_KEYS", ",".join(newest_first))

    return use


@pytest.fixture
def declared(pipelines):
    PipelineVersion.objects.filter(pipeline__name="hello").update(secrets=["API_TOKEN"])


@pytest.fixture
def old_processes(keys, declared, admin_user):
    """Two finished runs whose secrets the old key sealed, and one run without secrets."""
    keys(OLD)
    made = [process_create(pipeline="hello", used_config={}, owner=admin_user,
                           secrets={"API_TOKEN": f"{VALUE}-{n}"})[0] for n in range(2)]
    made.append(process_create(pipeline="hello", used_config={}, owner=admin_user)[0])
    Process.objects.filter(pk__in=[p.pk for p in made]).update(state=State.SUCCEEDED)
    return made


def rotate() -> str:
    out = StringIO()
    call_command("rotate_secrets", "--batch-size=1", stdout=out)
    return out.getvalue()


def test_the_old_key_still_opens_and_the_newest_seals(keys):
    keys(OLD)
    old = seal({"API_TOKEN": VALUE})
    keys(NEW, OLD)
    assert unseal(old) == {"API_TOKEN": VALUE}
    sealed_now = seal({"API_TOKEN": VALUE})
    keys(NEW)
    assert unseal(sealed_now) == {"API_TOKEN": VALUE}
    with pytest.raises(SecretsError, match="cannot be opened") as caught:
        unseal(old)
    assert VALUE not in str(caught.value)


def test_rotate_secrets_reseals_so_the_new_key_alone_opens(keys, old_processes):
    keys(NEW, OLD)
    assert "re-sealed 2 process(es)" in rotate()
    keys(NEW)
    opened = [unseal(p.secret_env) for p in Process.objects.exclude(secret_env="")]
    assert sorted(o["API_TOKEN"] for o in opened) == [f"{VALUE}-0", f"{VALUE}-1"]

    keys(NEW, OLD)  # a second run changes nothing
    before = dict(Process.objects.values_list("pk", "secret_env"))
    said = rotate()
    assert "re-sealed 0 process(es)" in said and "2 already were" in said
    assert dict(Process.objects.values_list("pk", "secret_env")) == before


def test_rotate_secrets_names_what_no_key_opens(keys, old_processes):
    keys(NEW)  # the old key forgotten before rotating
    with pytest.raises(CommandError, match="2 process"):
        rotate()


def test_a_rerun_of_an_old_process_after_rotation_gets_its_secrets_to_the_job(
    keys, old_processes, admin_user
):
    keys(NEW, OLD)
    rotate()
    keys(NEW)  # the old key is gone everywhere, the worker's side too
    again = process_rerun(Process.objects.get(pk=old_processes[0].pk), owner=admin_user)
    assert unseal(messaging.job_spec(again).secret_env) == {"API_TOKEN": f"{VALUE}-0"}


def test_the_admin_rerun_of_an_old_process_opens_while_both_keys_are_set(
    keys, old_processes, client, admin_user
):
    keys(NEW, OLD)  # rotated config, rotate_secrets not run yet
    client.force_login(admin_user)
    first = old_processes[1]
    client.post("/admin/processes/process/", {"action": "rerun", "_selected_action": [first.pk]})
    again = Process.objects.exclude(pk__in=[p.pk for p in old_processes]).get()
    assert unseal(messaging.job_spec(again).secret_env) == {"API_TOKEN": f"{VALUE}-1"}
