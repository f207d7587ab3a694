"""Signed messages (workers.signing, workers.credential): what a worker accepts, everything it
refuses, and the keys derived per pool and per worker so that none is shared."""

from __future__ import annotations

import stat
import time

import pytest

from workers import credential, signing, tasks
from workers.contract import JobSpec, PollItem, PollRequest
from workers.credential import Credential, CredentialError, derive
from workers.signing import (
    Sender,
    SignatureError,
    pool_key,
    sign,
    sign_report,
    verify,
    verify_report,
    worker_key,
)

OLD, NEW = "old-key-" + "x" * 32, "new-key-" + "y" * 32


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("ORCH_SIGNING_KEYS", OLD)
    for name in ("ORCH_SIGNATURE_MAX_AGE_S", "ORCH_POLL_SIGNATURE_MAX_AGE_S"):
        monkeypatch.delenv(name, raising=False)


def spec(pool: str = "local") -> dict:
    return JobSpec(process_id="p1", pipeline="hello", version=1, target="local", pool=pool,
                   command=["echo", "hi"]).to_dict()


def test_a_signed_spec_verifies_to_its_body():
    assert verify(sign("spec", "local", spec()), "spec", "local") == spec()


@pytest.mark.parametrize("field, value", [
    ("command", ["sh", "-c", "id"]), ("pool_settings", {"work_root": "/"}), ("env", {"A": "1"}),
])
def test_a_tampered_body_is_refused(field, value):
    envelope = sign("spec", "local", spec())
    envelope["body"][field] = value
    with pytest.raises(SignatureError, match="bad signature"):
        verify(envelope, "spec", "local")


def test_a_tampered_issue_time_is_refused():
    envelope = sign("spec", "local", spec(), issued_at=time.time() - 3 * 24 * 3600)
    envelope["issued_at"] = time.time()
    with pytest.raises(SignatureError, match="bad signature"):
        verify(envelope, "spec", "local")


@pytest.mark.parametrize("envelope", [spec(), {}, None, "text", {"signature": "00", "body": {}}])
def test_unsigned_or_malformed_messages_are_refused(envelope):
    with pytest.raises(SignatureError, match=r"unsigned|malformed"):
        verify(envelope, "spec", "local")


def test_a_wrong_key_is_refused():
    envelope = sign("spec", "local", spec(), key=b"not-the-control-plane-key")
    with pytest.raises(SignatureError, match="bad signature"):
        verify(envelope, "spec", "local")


def test_after_rotation_the_new_key_signs_and_the_old_one_still_verifies(monkeypatch):
    before = sign("spec", "local", spec())
    monkeypatch.setenv("ORCH_SIGNING_KEYS", f"{NEW},{OLD}")
    after = sign("spec", "local", spec())
    assert verify(before, "spec", "local") == verify(after, "spec", "local")
    monkeypatch.setenv("ORCH_SIGNING_KEYS", NEW)  # the old key dropped: what it signed is not
    verify(after, "spec", "local")
    with pytest.raises(SignatureError, match="bad signature"):
        verify(before, "spec", "local")


def test_a_spec_waits_hours_but_not_past_its_bound(monkeypatch):
    hours_ago = sign("spec", "local", spec(), issued_at=time.time() - 6 * 3600)
    assert verify(hours_ago, "spec", "local")
    days_ago = sign("spec", "local", spec(), issued_at=time.time() - 2 * 24 * 3600)
    with pytest.raises(SignatureError, match="stale"):
        verify(days_ago, "spec", "local")
    monkeypatch.setenv("ORCH_SIGNATURE_MAX_AGE_S", "3600")
    with pytest.raises(SignatureError, match="stale"):
        verify(hours_ago, "spec", "local")


def test_a_poll_is_stale_after_minutes():
    request = PollRequest(pool="local", target="local", host="h",
                          items=[PollItem("p1", "handle")]).to_dict()
    assert verify(sign("poll", "local", request, issued_at=time.time() - 60), "poll", "local")
    with pytest.raises(SignatureError, match="stale"):
        verify(sign("poll", "local", request, issued_at=time.time() - 600), "poll", "local")


def test_a_message_from_the_future_is_refused():
    with pytest.raises(SignatureError, match="future"):
        verify(sign("spec", "local", spec(), issued_at=time.time() + 3600), "spec", "local")


def test_a_message_for_another_pool_or_kind_is_refused():
    # Signed with the docker pool's key, which a worker of the local pool does not hold.
    with pytest.raises(SignatureError, match="bad signature"):
        verify(sign("spec", "docker", spec("docker")), "spec", "local")
    with pytest.raises(SignatureError, match="pool"):  # the envelope and its body disagree
        verify(sign("spec", "local", spec("docker")), "spec", "local")
    with pytest.raises(SignatureError, match="expected"):  # a signed cancel is no spec
        verify(sign("cancel", "local", spec()), "spec", "local")


def test_the_key_file_is_made_once_with_mode_0600(monkeypatch, tmp_path):
    monkeypatch.delenv("ORCH_SIGNING_KEYS")
    monkeypatch.setenv("ORCH_SIGNING_KEY_FILE", str(tmp_path / "var" / "signing.key"))
    with pytest.raises(SignatureError, match="no signing key"):  # a worker never makes it
        verify(sign("spec", "local", spec(), key=b"k"), "spec", "local")
    envelope = sign("spec", "local", spec())
    path = tmp_path / "var" / "signing.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["signing.key"]
    assert signing.master_keys() == signing.master_keys(create=True)
    assert verify(envelope, "spec", "local") == spec()


def test_the_default_key_file_belongs_to_the_project_not_the_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert signing._key_file() == signing.project_root() / "var" / "signing.key"


def test_the_worker_task_refuses_and_starts_nothing(monkeypatch, caplog):
    monkeypatch.setenv("ORCH_POOL", "local")
    monkeypatch.setattr(tasks, "get_executor", lambda *a: pytest.fail("an executor was made"))
    before = tasks.refused["spec"]
    forged = spec()
    forged["command"] = ["sh", "-c", "id"]
    assert tasks.submit.run(forged) is None
    assert tasks.submit.run(sign("spec", "docker", spec("docker"))) is None
    assert tasks.poll.run({"kind": "poll"}) == 0
    assert tasks.cancel.run(sign("spec", "local", spec())) == 0
    assert tasks.refused["spec"] == before + 2
    assert "refused a spec message for process 'p1' on pool local: unsigned" in caplog.text


def test_a_poll_of_no_handles_keeps_the_pools_settings_and_asks_the_target_nothing(
        monkeypatch):
    from workers.executors import last_settings
    from workers.executors.slurm.rest import SlurmRestExecutor

    monkeypatch.setenv("ORCH_POOL", "rest-pool")
    monkeypatch.setattr(SlurmRestExecutor, "poll",
                        lambda self, items: pytest.fail("the target was asked"))
    settings = {"url": "http://127.0.0.1:6829", "user": "orch-slurm"}
    request = PollRequest(pool="rest-pool", target="slurm_rest", host=None, items=[],
                          pool_settings=settings)
    assert tasks.poll.run(sign("poll", "rest-pool", request.to_dict())) == 0
    assert last_settings("rest-pool") == settings  # what the heartbeat's cluster check uses


# --- keys derived per pool and per worker ------------------------------------------------------

def masters(*texts: str) -> list[bytes]:
    return [t.encode() for t in texts]


def test_every_pool_and_every_worker_has_a_key_of_its_own():
    master = OLD.encode()
    assert pool_key(master, "local") != pool_key(master, "docker-main")
    assert pool_key(master, "local") != pool_key(NEW.encode(), "local")
    assert worker_key(master, "local", "a@h1") != worker_key(master, "local", "a@h2")
    assert worker_key(master, "local", "a@h1") != worker_key(master, "docker-main", "a@h1")
    # The separator cannot be smuggled in a name: two pairs never derive one key.
    with pytest.raises(ValueError, match="not a pool and worker"):
        worker_key(master, "local\0a", "b@h")
    assert master not in (pool_key(master, "local"), worker_key(master, "local", "a@h1"))


def test_a_worker_verifies_its_pools_messages_with_its_credential_alone(monkeypatch):
    held = derive("local", "local@h1", masters(OLD))
    monkeypatch.setenv("ORCH_SIGNING_KEYS", "")  # no master key in reach of the worker
    monkeypatch.setenv("ORCH_SIGNING_KEY_FILE", "/nonexistent/signing.key")
    with pytest.raises(SignatureError, match="no signing key"):
        signing.master_keys()
    envelope = sign("spec", "local", spec(), key=pool_key(OLD.encode(), "local"))
    assert verify(envelope, "spec", "local", keys=list(held.pool_keys)) == spec()
    other = derive("docker-main", "docker-main@h1", masters(OLD))
    with pytest.raises(SignatureError, match="bad signature"):
        verify(envelope, "spec", "local", keys=list(other.pool_keys))


def test_a_report_names_the_worker_whose_key_signed_it():
    held = derive("local", "local@h1", masters(OLD))
    body = [{"process_id": "p1", "source": "x", "state": "RUNNING"}]
    envelope = sign_report("events", held.pool, held.worker, body, key=held.worker_keys[0])
    assert verify_report(envelope, "events") == (Sender("local", "local@h1"), body)
    assert Sender("local", "local@h1").host == "h1"

    # Claiming another worker, another pool, changing the body or the kind: all refused.
    for field, value in [("worker", "local@h2"), ("pool", "docker-main"),
                         ("body", [{"process_id": "p1", "source": "x", "state": "FAILED"}])]:
        with pytest.raises(SignatureError, match="bad signature"):
            verify_report({**envelope, field: value}, "events")
    with pytest.raises(SignatureError, match="wrong kind"):
        verify_report(envelope, "heartbeat")
    # A worker of another pool signs only as itself.
    other = derive("docker-main", "docker-main@h1", masters(OLD))
    forged = sign_report("events", "local", "local@h1", body, key=other.worker_keys[0])
    with pytest.raises(SignatureError, match="bad signature"):
        verify_report(forged, "events")


@pytest.mark.parametrize("envelope, reason", [
    ([{"process_id": "p1", "source": "worker:x", "state": "SUCCEEDED"}], "unsigned"),
    ({"kind": "events", "pool": "local", "body": []}, "unsigned"),
    ({"kind": "events", "pool": "local", "issued_at": 1, "body": [], "signature": "00"},
     "malformed"),
    ({"kind": "events", "pool": "local", "worker": "no-host", "issued_at": 1, "body": [],
      "signature": "00"}, "malformed"),
    ({"kind": "events", "pool": "local", "worker": "a@h", "issued_at": 1, "body": [],
      "signature": "00"}, "bad signature"),
])
def test_unsigned_malformed_and_forged_reports_are_refused(envelope, reason):
    with pytest.raises(SignatureError, match=reason):
        verify_report(envelope, "events")


def test_rotation_keeps_reports_and_credentials_verifying(monkeypatch):
    """Two masters: a worker whose credential holds both verifies what the newest signs and
    what the oldest signed; the control plane believes a worker still signing with the old."""
    old_worker = derive("local", "local@h1", masters(OLD))
    body = {"pool": "local"}
    before = sign_report("heartbeat", "local", "local@h1", body, key=old_worker.worker_keys[0])
    old_spec = sign("spec", "local", spec())
    monkeypatch.setenv("ORCH_SIGNING_KEYS", f"{NEW},{OLD}")
    assert verify_report(before, "heartbeat")[0].worker == "local@h1"
    held = derive("local", "local@h1", signing.master_keys())
    new_spec = sign("spec", "local", spec())
    for envelope in (old_spec, new_spec):
        assert verify(envelope, "spec", "local", keys=list(held.pool_keys)) == spec()
    # A worker that still holds only the old credential cannot verify what the new key signs.
    with pytest.raises(SignatureError, match="bad signature"):
        verify(new_spec, "spec", "local", keys=list(old_worker.pool_keys))
    after = sign_report("heartbeat", "local", "local@h1", body, key=held.worker_keys[0])
    monkeypatch.setenv("ORCH_SIGNING_KEYS", NEW)  # the old master dropped
    assert verify_report(after, "heartbeat")[0].pool == "local"
    with pytest.raises(SignatureError, match="bad signature"):
        verify_report(before, "heartbeat")


def test_a_credential_round_trips_and_garbage_is_refused_clearly():
    held = derive("local", "local@h1", masters(NEW, OLD))
    text = held.to_text()
    assert Credential.from_text(text + "\n") == held
    assert OLD not in text
    assert NEW not in text
    for garbage in ("", "orchw1.!!!", "secret", text[:-4]):
        with pytest.raises(CredentialError, match="worker_credential"):
            Credential.from_text(garbage)


def test_a_credential_for_another_pool_or_worker_is_refused_at_setup(monkeypatch):
    monkeypatch.setattr(credential, "_expected", None)
    monkeypatch.setattr(credential, "_held", None)
    text = derive("docker-main", "docker-main@h1", masters(OLD)).to_text()
    monkeypatch.setenv("ORCH_WORKER_CREDENTIAL", text)
    with pytest.raises(CredentialError, match=r"for worker 'docker-main@h1' of pool "
                                              r"'docker-main'.*--pool local"):
        credential.setup("local", "local@h1")
    with pytest.raises(CredentialError, match="--worker other@h1"):
        credential.setup("docker-main", "other@h1")
    assert credential.setup("docker-main", "docker-main@h1").pool == "docker-main"
    # Held from now on: the master keys are not read again.
    monkeypatch.setenv("ORCH_SIGNING_KEYS", NEW)
    assert credential.current().pool_keys == (pool_key(OLD.encode(), "docker-main"),)


def test_a_worker_without_a_credential_derives_its_keys_once(monkeypatch, tmp_path):
    monkeypatch.setattr(credential, "_expected", None)
    monkeypatch.setattr(credential, "_held", None)
    monkeypatch.delenv("ORCH_SIGNING_KEYS")
    monkeypatch.setenv("ORCH_SIGNING_KEY_FILE", str(tmp_path / "signing.key"))
    # The control plane has not made its key file yet: the worker waits for it.
    assert credential.setup("local", "local@h1") is None
    with pytest.raises(SignatureError, match="no signing key"):
        credential.current()
    (tmp_path / "signing.key").write_text(OLD + "\n")
    assert credential.current() == derive("local", "local@h1", masters(OLD))
    (tmp_path / "signing.key").write_text(NEW + "\n")  # read once: what it holds stays
    assert credential.current() == derive("local", "local@h1", masters(OLD))
