"""Signed messages (workers.signing): what a worker accepts, and everything it refuses."""

from __future__ import annotations

import stat
import time

import pytest

from workers import signing, tasks
from workers.contract import JobSpec, PollItem, PollRequest
from workers.signing import SignatureError, sign, verify

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
    with pytest.raises(SignatureError, match="unsigned|malformed"):
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
    with pytest.raises(SignatureError, match="pool"):
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
    assert signing.keys() == signing.keys(create=True)
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
