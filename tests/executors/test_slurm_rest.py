"""The slurm_rest target (slurmrestd with a JWT) against the real one-node cluster.

Like test_slurm.py these tests need ``deploy/slurm-cluster.sh start`` first and fail with that
advice otherwise. Tokens are minted from the cluster's key with PyJWT (the deploy script
generates it once in /etc/slurm); one test takes them from ``scontrol token`` instead.
Where Slurm must misbehave, a test wraps the executor's one request function.
"""

from __future__ import annotations

import json
import time

import jwt
import pytest
import requests

from tests.executors.contract import ended, full_log, item_for, poll_until
from tests.executors.slurm_contract import (
    START_ADVICE,
    SlurmContract,
    cancel_named,
    new_spec,
    over_its_time_limit,
    require_cluster,
    shipped_pipeline,
)
from workers.contract import State
from workers.executors.base import ExecutorError
from workers.executors.slurm_rest import RestError, SlurmRestExecutor

URL = "http://127.0.0.1:6820"
JWT_KEY = "/etc/slurm/jwt_hs256.key"


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
def cluster():
    require_cluster()
    try:
        requests.get(f"{URL}/openapi/v3", timeout=5)
    except requests.RequestException as exc:
        pytest.fail(f"slurmrestd does not answer on {URL} ({exc}): {START_ADVICE}")


def rest_executor(work_root, **settings) -> SlurmRestExecutor:
    settings = {"url": URL, "jwt_key": JWT_KEY, "user": "root", "partition": "main",
                "work_root": str(work_root), **settings}
    return SlurmRestExecutor("slurm-rest-test", settings)


@pytest.fixture
def executor(tmp_path):
    return rest_executor(tmp_path / "work")


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
def timed_out_job(cluster, tmp_path_factory):
    """Submitted first, checked last (see test_slurm.py): a time limit takes about 85 s."""
    executor = rest_executor(tmp_path_factory.mktemp("limit"))
    spec = over_its_time_limit("slurm_rest", "slurm-rest-test")
    yield executor, spec, executor.submit(spec)
    cancel_named({spec.job_name})


def test_one_request_answers_for_many_jobs(executor, make_spec, monkeypatch):
    specs = [make_spec("sleep") for _ in range(20)]
    items = [item_for(s, executor.submit(s).handle) for s in specs]
    calls = RequestLog(monkeypatch, executor)
    events = executor.poll(items)
    assert calls.calls == [("GET", "jobs")]
    assert all(e.state in (State.SUBMITTED, State.RUNNING) for e in events)


def test_job_gone_from_the_listing_is_read_from_its_exit_code_file(executor, make_spec,
                                                                   monkeypatch):
    spec = make_spec("fail")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, ended)
    RequestLog(monkeypatch, executor, no_jobs_listed)
    (event,) = executor.poll([item])
    assert event.state == State.FAILED and event.exit_code == 3


def test_running_job_missing_from_one_listing_is_not_decided(executor, make_spec, monkeypatch):
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, lambda e: e.state == State.RUNNING)
    RequestLog(monkeypatch, executor, no_jobs_listed)
    (event,) = executor.poll([item])
    assert event.state is None and not event.missing
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


def test_an_unreachable_slurmrestd_raises(make_spec, tmp_path):
    executor = rest_executor(tmp_path, url="http://127.0.0.1:9", request_timeout_s=2)
    spec = make_spec("ok")
    with pytest.raises(ExecutorError) as raised:
        executor.poll([item_for(spec, f"1:{spec.job_name}:{int(time.time())}")])
    assert not raised.value.permanent


def test_the_token_is_renewed_before_it_expires(make_spec, tmp_path):
    """A 9 s token is replaced after 6 s, before any call could fail with it; a call after
    the first token's expiry succeeds, and slurmrestd would have refused that first token."""
    executor = rest_executor(tmp_path, token_lifespan_s=9)
    spec = make_spec("ok")
    item = item_for(spec, executor.submit(spec).handle)
    first = executor.tokens.get()
    renewals = executor.tokens.renewals
    time.sleep(max(0.0, executor.tokens.renew_at - time.time()) + 0.2)
    executor.poll([item])  # renews before the request goes out
    assert executor.tokens.token != first
    assert executor.tokens.renewals == renewals + 1
    expires = jwt.decode(first, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires + 1.5 - time.time()))  # Slurm's clock counts whole seconds
    (event,) = executor.poll([item])
    assert event.state in (State.SUBMITTED, State.RUNNING, State.SUCCEEDED)
    assert executor.tokens.renewals == renewals + 1  # the second token is still good
    stale = requests.get(f"{URL}/slurm/v0.0.38/jobs", timeout=10, headers={
        "X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": first})
    assert stale.status_code == 500 and stale.json()["errors"]  # what a late renewal would get


def test_tokens_from_scontrol_work_too(make_spec, tmp_path, monkeypatch):
    monkeypatch.delenv("ORCH_SLURM_JWT_KEY", raising=False)
    executor = rest_executor(tmp_path, jwt_key="", token_lifespan_s=600)
    spec = make_spec("ok")
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.SUCCEEDED
    assert f"hello from {spec.process_id}" in full_log(events)


def test_a_bad_partition_is_a_permanent_error(make_spec, tmp_path):
    executor = rest_executor(tmp_path, partition="nosuchpartition")
    with pytest.raises(ExecutorError) as raised:
        executor.submit(make_spec("ok"))
    assert raised.value.permanent
    assert "partition" in str(raised.value)


def test_the_shipped_hello_slurm_rest_pipeline_runs(make_spec, tmp_path):
    pipeline, settings = shipped_pipeline("hello-slurm-rest", tmp_path)
    executor = SlurmRestExecutor(pipeline["pool"], {**settings, "user": "root"})
    spec = make_spec("hello", command=[], script=pipeline["run"]["script"],
                     config={"name": "Ada"})
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.SUCCEEDED
    assert f"(through slurmrestd), process {spec.process_id}" in full_log(events)
    assert '{"name": "Ada"}' in full_log(events)


# Last: its time-limit test waits for the job timed_out_job submitted as the module began.
class TestSlurmRestContract(SlurmContract):
    def saved_job(self, executor, job_id: str) -> dict[str, str]:
        answer = executor.request("GET", f"job/{job_id}")
        return {**super().saved_job(executor, job_id), "slurmrestd job": json.dumps(answer)}
