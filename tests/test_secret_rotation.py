"""Key rotation (ORCH_SECRETS_KEYS, newest first): what an older key sealed still opens, the
newest key seals, ``rotate_secrets`` re-seals the stored secrets so the old key can go, and a
re-run of an old process still gets its secrets to the job. Values sealed before secrets were
bound to their process are bound to it by the upgrade's migration (or ``rotate_secrets``), so
waiting processes keep them."""

from __future__ import annotations

import importlib
import json
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.management import CommandError, call_command

from apps.pipelines.models import PipelineVersion
from apps.processes import messaging
from apps.processes.models import Process
from apps.processes.services import process_create, process_rerun
from workers.contract import JobSpec, State
from workers.secrets import SecretsError, pool_keys_text, seal, unseal

pytestmark = pytest.mark.django_db

VALUE = "rotated-s3cr3t-77aa"
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
PID = "5d0c1f2a-0000-4000-8000-000000000001"


@pytest.fixture
def keys(monkeypatch):
    """keys("NEW,OLD"): the keys every side reads from now on."""
    monkeypatch.delenv("ORCH_SECRETS_KEY", raising=False)
    monkeypatch.delenv("ORCH_POOL_SECRETS_KEYS", raising=False)

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


def opened(spec: JobSpec) -> dict[str, str]:
    """The secrets of ``spec``, opened as its worker opens them."""
    return unseal(spec.secret_env, process_id=spec.process_id, pool=spec.pool)


def test_the_old_key_still_opens_and_the_newest_seals(keys):
    bound = {"process_id": PID, "pool": "local"}
    keys(OLD)
    old = seal({"API_TOKEN": VALUE}, **bound)
    keys(NEW, OLD)
    assert unseal(old, **bound) == {"API_TOKEN": VALUE}
    sealed_now = seal({"API_TOKEN": VALUE}, **bound)
    keys(NEW)
    assert unseal(sealed_now, **bound) == {"API_TOKEN": VALUE}
    with pytest.raises(SecretsError, match="cannot be opened") as caught:
        unseal(old, **bound)
    assert VALUE not in str(caught.value)


def test_a_worker_given_its_pools_keys_of_both_masters_opens_across_the_rotation(
    keys, monkeypatch, tmp_path
):
    bound = {"process_id": PID, "pool": "local"}
    keys(OLD)
    old = seal({"API_TOKEN": VALUE}, **bound)
    keys(NEW, OLD)
    new = seal({"API_TOKEN": f"{VALUE}-new"}, **bound)
    pool_keys = pool_keys_text("local")
    assert len(pool_keys.split(",")) == 2
    assert NEW not in pool_keys
    assert OLD not in pool_keys

    # The worker: its pool's keys only, no master key.
    monkeypatch.delenv("ORCH_SECRETS_KEYS")
    monkeypatch.setenv("ORCH_SECRETS_KEY_FILE", str(tmp_path / "no-master-key-here"))
    monkeypatch.setenv("ORCH_POOL_SECRETS_KEYS", pool_keys)
    assert unseal(old, **bound) == {"API_TOKEN": VALUE}
    assert unseal(new, **bound) == {"API_TOKEN": f"{VALUE}-new"}
    monkeypatch.setenv("ORCH_POOL_SECRETS_KEYS", pool_keys.split(",")[0])  # OLD's dropped
    assert unseal(new, **bound) == {"API_TOKEN": f"{VALUE}-new"}
    with pytest.raises(SecretsError, match="cannot be opened"):
        unseal(old, **bound)


def test_rotate_secrets_reseals_so_the_new_key_alone_opens(keys, old_processes):
    keys(NEW, OLD)
    assert "re-sealed 2 process(es)" in rotate()
    keys(NEW)
    values = [opened(messaging.job_spec(p)) for p in Process.objects.exclude(secret_env="")]
    assert sorted(v["API_TOKEN"] for v in values) == [f"{VALUE}-0", f"{VALUE}-1"]
    # Each still bound to its own process: swapped, neither opens.
    first, second = old_processes[0].pk, old_processes[1].pk
    with pytest.raises(SecretsError, match="sealed for another process"):
        unseal(Process.objects.get(pk=first).secret_env, process_id=second, pool="local")

    keys(NEW, OLD)  # a second run changes nothing
    before = dict(Process.objects.values_list("pk", "secret_env"))
    said = rotate()
    assert "re-sealed 0 process(es)" in said
    assert "2 already were" in said
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
    assert opened(messaging.job_spec(again)) == {"API_TOKEN": f"{VALUE}-0"}


def test_the_admin_rerun_of_an_old_process_opens_while_both_keys_are_set(
    keys, old_processes, client, admin_user
):
    keys(NEW, OLD)  # rotated config, rotate_secrets not run yet
    client.force_login(admin_user)
    first = old_processes[1]
    client.post("/admin/processes/process/", {"action": "rerun", "_selected_action": [first.pk]})
    again = Process.objects.exclude(pk__in=[p.pk for p in old_processes]).get()
    assert opened(messaging.job_spec(again)) == {"API_TOKEN": f"{VALUE}-1"}


# --- values sealed before secrets were bound to their process ---------------------------------


def sealed_unbound(key: str, values: dict[str, str]) -> str:
    """Sealed as every release before the binding did: the bare values, with a master key."""
    return Fernet(key).encrypt(json.dumps(values).encode()).decode()


@pytest.fixture
def unbound_processes(keys, declared, admin_user):
    """A QUEUED and a finished process whose secrets were sealed before the upgrade, one with
    OLD, one with NEW (after a rotation)."""
    keys(NEW, OLD)
    made = []
    for n, (state, key) in enumerate([(State.QUEUED, OLD), (State.SUCCEEDED, NEW)]):
        process = process_create(pipeline="hello", used_config={}, owner=admin_user)[0]
        Process.objects.filter(pk=process.pk).update(
            state=state, secret_env=sealed_unbound(key, {"API_TOKEN": f"{VALUE}-{n}"}))
        made.append(process)
    return made


@pytest.mark.django_db(transaction=True)  # migrate runs its own transactions
def test_unbound_values_open_nowhere_until_the_migration_binds_them_to_their_process(
    unbound_processes
):
    waiting, finished = (Process.objects.get(pk=p.pk) for p in unbound_processes)
    with pytest.raises(SecretsError, match="sealed before secrets were bound") as refused:
        opened(messaging.job_spec(waiting))
    assert VALUE not in str(refused.value)

    # The upgrade: the migration that binds them runs again from the one before it.
    call_command("migrate", "processes", "0004", verbosity=0)
    call_command("migrate", verbosity=0)  # every app: some depend on processes

    assert opened(messaging.job_spec(Process.objects.get(pk=waiting.pk))) == {
        "API_TOKEN": f"{VALUE}-0"}
    assert opened(messaging.job_spec(Process.objects.get(pk=finished.pk))) == {
        "API_TOKEN": f"{VALUE}-1"}
    moved = Process.objects.get(pk=waiting.pk).secret_env
    with pytest.raises(SecretsError, match="sealed for another process"):
        unseal(moved, process_id=finished.pk, pool="local")
    said = rotate()  # bound with the newest key already: nothing left to do
    assert "re-sealed 0 process(es)" in said
    assert "2 already were" in said


def test_without_a_master_key_the_migration_changes_nothing_and_makes_no_key(
    unbound_processes, monkeypatch, tmp_path, capsys
):
    monkeypatch.delenv("ORCH_SECRETS_KEYS")
    monkeypatch.setenv("ORCH_SECRETS_KEY_FILE", str(tmp_path / "secrets.key"))
    before = dict(Process.objects.values_list("pk", "secret_env"))
    migration = importlib.import_module("apps.processes.migrations.0005_bind_secrets_to_process")
    migration.bind_to_process(apps, None)
    assert dict(Process.objects.values_list("pk", "secret_env")) == before
    assert not (tmp_path / "secrets.key").exists()
    assert "run `manage.py rotate_secrets`" in capsys.readouterr().err


def test_rotate_secrets_binds_unbound_values_too(unbound_processes):
    assert "re-sealed 2 process(es)" in rotate()
    waiting = Process.objects.get(pk=unbound_processes[0].pk)
    assert opened(messaging.job_spec(waiting)) == {"API_TOKEN": f"{VALUE}-0"}


def test_rotate_secrets_names_a_process_holding_anothers_secrets(keys, old_processes):
    keys(NEW, OLD)
    first, second = old_processes[0], old_processes[1]
    Process.objects.filter(pk=second.pk).update(
        secret_env=Process.objects.get(pk=first.pk).secret_env)
    with pytest.raises(CommandError, match=f"sealed for another process: {second.pk}"):
        rotate()
