"""The slurm_rest target (slurmrestd with a JWT) against the real one-node cluster.

Like test_slurm.py these tests need ``deploy/slurm-cluster.sh start`` first and skip with that
advice otherwise (a failure in CI). The worker holds no cluster key: it reads the token the
deploy script wrote for the jobs' user (``ORCH_SLURM_TOKEN_FILE``); the tests that need other
tokens make them with ``scontrol token``, as an operator would. Where Slurm must misbehave, a
test wraps the executor's one request function.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.executors.contract import ended, full_log, item_for, poll_until
from tests.executors.slurm_contract import (
    JOB_USER,
    ROOT,
    SlurmContract,
    SlurmTimeLimit,
    cancel_named,
    current,
    new_spec,
    over_its_time_limit,
    reachable_dir,
    require_cluster,
    shipped_pipeline,
    slurm,
)
from workers.contract import State
from workers.executors import get_executor
from workers.executors.base import ExecutorError
from workers.executors.slurm import rest, rest_versions
from workers.executors.slurm.rest import RestError, SlurmRestExecutor
from workers.heartbeat import ClusterCheck
from workers.pool_settings import settings_errors

both_clusters = pytest.mark.both_slurm_clusters


class RequestLog:
    """Wraps the executor's request function: records (method, path), lets a test fake
    answers (a dict, or an exception to raise); every other request reaches slurmrestd."""

    def __init__(self, monkeypatch, executor, fake=None):
        self.calls: list[tuple[str, str]] = []
        real = executor.request

        def request(method, path, body=None):
            self.calls.append((method, path))
            answer = fake(method, path) if fake else None
            if isinstance(answer, Exception):
                raise answer
            return answer if answer is not None else real(method, path, body)

        monkeypatch.setattr(executor, "request", request)

    def count(self, method: str, path: str) -> int:
        return self.calls.count((method, path))


def no_jobs_listed(method, path):
    return {"jobs": []} if (method, path) == ("GET", "jobs") else None


@pytest.fixture(scope="module", autouse=True)
def cluster(slurm_cluster):
    require_cluster()
    url, advice = slurm_cluster.url, slurm_cluster.advice
    try:
        requests.get(f"{url}/openapi/v3", timeout=5)
    except requests.RequestException as exc:
        pytest.skip(f"slurmrestd does not answer on {url} ({exc}): {advice}")
    if not Path(slurm_cluster.token_file).is_file():
        pytest.skip(f"no token for {JOB_USER} at {slurm_cluster.token_file}: {advice}")
    return slurm_cluster


def rest_executor(root, **settings) -> SlurmRestExecutor:
    settings = {"url": current().url, "token_file": current().token_file, "user": JOB_USER,
                "partition": "main", "work_root": str(root), **settings}
    return SlurmRestExecutor("slurm-rest-test", settings)


@pytest.fixture
def work_root():
    """A work root the jobs' user can reach (pytest's tmp_path is root's alone)."""
    with reachable_dir() as path:
        yield path / "work"


@pytest.fixture
def executor(work_root):
    return rest_executor(work_root)


def scontrol_token(user: str, lifespan_s: int) -> str:
    """A token made the way an operator makes one, where the cluster's key lives."""
    done = slurm("scontrol", "token", f"username={user}", f"lifespan={lifespan_s}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SLURM_JWT="), done.stderr
    return done.stdout


def forged_token(user: str) -> str:
    """A well-formed JWT for ``user``, signed with a key that is not the cluster's."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(json.dumps({"iat": now, "exp": now + 600, "sun": user}).encode())
    signature = hmac.new(secrets.token_bytes(32), f"{head}.{body}".encode(), hashlib.sha256)
    return f"{head}.{body}.{part(signature.digest())}"


def write_token(path: Path, text: str) -> None:
    """Replace the token file whole, the way a cron job should (a new file, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


@pytest.fixture
def make_spec():
    names: set[str] = set()

    def make(kind, **fields):
        spec = new_spec(kind, "slurm_rest", "slurm-rest-test", **fields)
        names.add(spec.job_name)
        return spec

    yield make
    cancel_named(names)


@pytest.fixture(scope="module", autouse=True)
def timed_out_job(cluster):
    """Submitted first, checked last (see test_slurm.py): a time limit takes about 85 s."""
    with reachable_dir() as root:
        executor = rest_executor(root)
        spec = over_its_time_limit("slurm_rest", "slurm-rest-test")
        yield executor, spec, executor.submit(spec)
        cancel_named({spec.job_name})


@both_clusters
def test_the_newest_version_both_know_is_spoken(cluster, work_root):
    """Read from what the daemon serves, not assumed: v0.0.38 from 22.05, v0.0.42 from 24.11."""
    executor = rest_executor(work_root)
    served = executor.served_versions()
    assert executor.version.name == cluster.rest_api_version == max(
        (v for v in served if v in rest_versions.VERSIONS), key=rest_versions.version_key)
    health = executor.cluster_health()
    assert health["reachable"] is True
    assert health["rest_api_version"] == cluster.rest_api_version


@both_clusters
def test_the_heartbeat_reports_the_cluster_and_the_version_in_use(cluster, work_root):
    """With the settings of the pool's last message, in a thread of its own."""
    never = ClusterCheck("slurm-rest-never-messaged", "slurm_rest")
    assert never() is None  # no settings yet: nothing is guessed, nothing asked
    assert never.running is None
    settings = rest_executor(work_root).settings
    get_executor("slurm_rest", "slurm-rest-beat", settings)  # a message of the pool came in
    check = ClusterCheck("slurm-rest-beat", "slurm_rest")
    assert check() is None  # asked in the background: the beat does not wait
    assert check.running is not None
    check.running.join(60)
    assert check()["reachable"] is True
    assert check()["rest_api_version"] == cluster.rest_api_version


@both_clusters
def test_a_pinned_version_the_daemon_does_not_serve_fails_every_submission(make_spec, work_root):
    served = rest_executor(work_root).served_versions()
    pinned = next(v for v in rest_versions.VERSIONS if v not in served)
    executor = rest_executor(work_root, api_version=pinned)
    spec = make_spec("ok")
    with pytest.raises(ExecutorError) as raised:
        executor.submit(spec)
    assert raised.value.permanent
    assert f"pins {pinned}, but slurmrestd serves {', '.join(served)}" in str(raised.value)
    assert slurm("squeue", "-h", f"--name={spec.job_name}", "-o", "%i").stdout.strip() == ""
    health = executor.cluster_health()
    assert health["reachable"] is False
    assert f"serves {', '.join(served)}" in health["detail"]


@both_clusters
def test_one_request_answers_for_many_jobs(executor, make_spec, monkeypatch):
    specs = [make_spec("sleep") for _ in range(20)]
    items = [item_for(s, executor.submit(s).handle) for s in specs]
    calls = RequestLog(monkeypatch, executor)
    events = executor.poll(items)
    assert calls.calls == [("GET", "jobs")]
    assert all(e.state in (State.SUBMITTED, State.RUNNING) for e in events)


@both_clusters
def test_job_gone_from_the_listing_is_read_from_its_exit_code_file(executor, make_spec,
                                                                   monkeypatch):
    spec = make_spec("fail")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, ended)
    RequestLog(monkeypatch, executor, no_jobs_listed)
    (event,) = executor.poll([item])
    assert event.state == State.FAILED
    assert event.exit_code == 3


def test_running_job_missing_from_one_listing_is_not_decided(executor, make_spec, monkeypatch):
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, lambda e: e.state == State.RUNNING)
    RequestLog(monkeypatch, executor, no_jobs_listed)
    (event,) = executor.poll([item])
    assert event.state is None
    assert not event.missing
    monkeypatch.undo()
    (event,) = executor.poll([item])
    assert event.state == State.RUNNING


@pytest.mark.parametrize("failure", [
    RestError(500, [{"error_number": -1, "error": "Unspecified error",
                     "description": "Failed while looking for jobs"}]),
    ExecutorError("slurmrestd at http://127.0.0.1:6820 did not answer: connection refused"),
])
def test_a_failed_listing_raises_instead_of_failing_jobs(executor, make_spec, monkeypatch,
                                                         failure):
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    RequestLog(monkeypatch, executor, lambda m, p: failure if p == "jobs" else None)
    with pytest.raises(ExecutorError, match="deciding nothing"):
        executor.poll([item_for(spec, sub.handle)])


def test_an_unreachable_slurmrestd_raises(make_spec, work_root):
    executor = rest_executor(work_root, url="http://127.0.0.1:9", request_timeout_s=2)
    spec = make_spec("ok")
    with pytest.raises(ExecutorError) as raised:
        executor.poll([item_for(spec, f"1:{spec.job_name}:{int(time.time())}")])
    assert not raised.value.permanent


def test_the_pool_holds_no_cluster_key():
    """Neither the shipped pool nor the worker's settings carry the cluster's key: a pool file
    that still names one is refused with what to use instead, and so is a worker sent one."""
    pool = yaml.safe_load((ROOT / "pipelines/pools/slurm-rest.yaml").read_text())
    assert not {"jwt_key", "token_lifespan_s"} & set(pool["settings"])
    assert pool["settings"]["user"] == JOB_USER
    assert pool["settings"]["token_file"]
    assert settings_errors("slurm_rest", pool["settings"]) == []
    [refused] = settings_errors("slurm_rest", {"jwt_key": "/etc/slurm/jwt_hs256.key"})
    assert refused.startswith("settings.jwt_key: no longer read")
    assert "token_file" in refused
    executor = SlurmRestExecutor("slurm-rest-test", {"jwt_key": "/etc/slurm/jwt_hs256.key",
                                                     "token_file": current().token_file})
    with pytest.raises(ExecutorError, match=r"settings\.jwt_key is no longer read") as raised:
        executor.request("GET", "jobs")
    assert raised.value.permanent


def test_a_renewed_token_file_is_read_again_without_a_restart(make_spec, work_root, tmp_path):
    """An expired token stops the worker with an error naming its file; once the operator
    writes a new one there, the same worker goes on with it."""
    token_file = tmp_path / "token"
    write_token(token_file, scontrol_token(JOB_USER, 1))
    executor = rest_executor(work_root, token_file=str(token_file))
    spec = make_spec("ok")
    time.sleep(2.5)
    with pytest.raises(ExecutorError) as raised:
        executor.submit(spec)
    assert f"the token in token_file {token_file} expired at" in str(raised.value)
    assert f"scontrol token username={JOB_USER}" in str(raised.value)
    assert not raised.value.permanent  # the run waits for the renewal, it does not fail
    with pytest.raises(ExecutorError, match=f"deciding nothing.*{token_file}.*expired"):
        executor.poll([item_for(spec, f"1:{spec.job_name}:{int(time.time())}")])

    write_token(token_file, scontrol_token(JOB_USER, 600))
    reads = executor.tokens.reads
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.SUCCEEDED, events[-1].message
    assert executor.tokens.reads == reads + 1  # read once when it changed, not per request


@pytest.mark.parametrize("make, said", [
    (lambda path: None, "cannot read the token: token_file {path}: No such file"),
    (lambda path: path.mkdir(), "cannot read the token: token_file {path}: not a file"),
    (lambda path: write_token(path, "not a token\n"), "token_file {path} holds no JWT"),
    (lambda path: (write_token(path, scontrol_token(JOB_USER, 600)), path.chmod(0o644)),
     "token_file {path} is readable by every user (mode 0644)"),
])
def test_a_token_file_the_worker_cannot_use_is_a_clear_error(work_root, tmp_path, make, said):
    path = tmp_path / "token"
    make(path)
    executor = rest_executor(work_root, token_file=str(path))
    with pytest.raises(ExecutorError) as raised:
        executor.request("GET", "jobs")
    assert said.format(path=path) in str(raised.value)


@both_clusters
def test_a_token_slurm_refuses_names_its_file(make_spec, work_root, tmp_path):
    token_file = tmp_path / "token"
    write_token(token_file, forged_token(JOB_USER))
    executor = rest_executor(work_root, token_file=str(token_file))
    spec = make_spec("ok")
    for call in (lambda: executor.poll([item_for(spec, f"1:{spec.job_name}:1")]),
                 lambda: executor.submit(spec)):
        with pytest.raises(ExecutorError) as raised:
            call()
        assert f"refuses the token: check the token in token_file {token_file}" in str(
            raised.value)
    assert slurm("squeue", "-h", f"--name={spec.job_name}", "-o", "%i").stdout.strip() == ""


@pytest.mark.parametrize("token_user, user, said", [
    ("root", None, "is root's: Slurm jobs never run as root"),
    (JOB_USER, "root", "settings.user: root; Slurm jobs never run as root"),
    ("slurmrest", JOB_USER, f"settings.user is '{JOB_USER}' but the token"),
])
def test_a_token_for_root_or_for_another_user_is_refused(make_spec, work_root, tmp_path,
                                                         token_user, user, said):
    token_file = tmp_path / "token"
    write_token(token_file, scontrol_token(token_user, 600))
    executor = rest_executor(work_root, token_file=str(token_file), user=user)
    spec = make_spec("ok")
    with pytest.raises(ExecutorError) as raised:
        executor.submit(spec)
    assert raised.value.permanent
    assert said in str(raised.value)
    assert not work_root.exists()  # nothing written, nothing submitted


def test_the_token_may_come_from_slurm_jwt_in_the_workers_environment(make_spec, work_root,
                                                                       monkeypatch):
    monkeypatch.delenv("ORCH_SLURM_TOKEN_FILE", raising=False)
    monkeypatch.setenv("SLURM_JWT", scontrol_token(JOB_USER, 600).strip().split("=", 1)[1])
    executor = rest_executor(work_root, token_file=None, user=None)
    spec = make_spec("ok")
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.SUCCEEDED
    assert f"hello from {spec.process_id}" in full_log(events)


@both_clusters
def test_a_bad_partition_is_a_permanent_error(make_spec, work_root):
    executor = rest_executor(work_root, partition="nosuchpartition")
    with pytest.raises(ExecutorError) as raised:
        executor.submit(make_spec("ok"))
    assert raised.value.permanent
    assert "partition" in str(raised.value)


# A field each release's newest version cannot read (its table passes these names as they are).
UNREADABLE = {"22.05": {"exclusive": "true"}, "24.11": {"shared": "whole"}}


@both_clusters
def test_a_refused_submission_leaves_no_job_even_when_slurmrestd_made_one(
        cluster, make_spec, work_root, monkeypatch):
    """24.11's slurmrestd answers a flag it cannot read with HTTP 500 and error 9207, and
    submits the job all the same without that field (22.05 refuses it whole): that job,
    which no process follows, is cancelled."""
    real = rest.job_description
    monkeypatch.setattr(rest, "job_description",
                        lambda options, env: {**real(options, env),
                                              **UNREADABLE[cluster.release]})
    executor = rest_executor(work_root)
    spec = make_spec("sleep")
    with pytest.raises(ExecutorError) as raised:
        executor.submit(spec)
    assert raised.value.permanent
    live = slurm("squeue", "-h", f"--name={spec.job_name}", "-t", "pending,running",
                 "-o", "%i").stdout.split()
    assert live == [], raised.value
    if cluster.release == "24.11":
        assert "all the same; cancelled" in str(raised.value)


def test_a_job_slurm_queues_to_wait_is_submitted_not_refused(executor, make_spec,
                                                              monkeypatch):
    """22.05's slurmrestd answers a job queued while its node is down (as just after
    slurmctld restarts) with HTTP 200, error 2068 and the job's id: the job waits in
    Slurm's queue, so it is followed, not cancelled and failed as a refusal."""
    real = executor.request

    def node_briefly_down(method, path, body=None):
        answer = real(method, path, body)
        if method == "POST" and path.endswith("submit"):
            raise rest.RestError(200, [{"error_code": 2068, "error": "Required node not "
                                        "available (down, drained or reserved)"}],
                                 job_id=answer["job_id"])
        return answer

    monkeypatch.setattr(executor, "request", node_briefly_down)
    spec = make_spec("ok")
    sub = executor.submit(spec)
    monkeypatch.undo()
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.SUCCEEDED, events[-1].message


def test_the_shipped_hello_slurm_rest_pipeline_runs(make_spec, work_root):
    pipeline, settings = shipped_pipeline("hello-slurm-rest", work_root)
    executor = SlurmRestExecutor(pipeline["pool"], settings)
    spec = make_spec("hello", command=[], script=pipeline["run"]["script"],
                     config={"name": "Ada"})
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.SUCCEEDED
    assert f"(through slurmrestd), process {spec.process_id}" in full_log(events)
    assert '{"name": "Ada"}' in full_log(events)


# Last: its time-limit test waits for the job timed_out_job submitted as the module began.
# On both clusters (on 24.11 in this module only: see test_slurm.py's timed_out_job).
@both_clusters
class TestSlurmRestContract(SlurmContract, SlurmTimeLimit):
    def saved_job(self, executor, job_id: str) -> dict[str, str]:
        answer = executor.request("GET", f"job/{job_id}")
        return {**super().saved_job(executor, job_id), "slurmrestd job": json.dumps(answer)}
