"""The slurm target (sbatch, squeue, scancel, sacct) against the real one-node cluster.

The cluster is started by ``deploy/slurm-cluster.sh start`` before the tests (CI does); these
tests do not start it, and skip with that advice when it does not answer (a failure in CI).
Where a test needs Slurm to misbehave (a failed or an empty squeue) it wraps the one
command-running function and lets every other call reach the real cluster. The tests run as
root, as the dev worker does: sbatch and scancel run as the pool's ``user``.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.executors.contract import ended, full_log, item_for, poll_until
from tests.executors.slurm_contract import (
    JOB_USER,
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
from workers.executors.base import ExecutorError
from workers.executors.slurm import cli
from workers.executors.slurm.base import submit_error
from workers.executors.slurm.cli import SlurmExecutor
from workers.pool_settings import settings_errors


class CallLog:
    """Wraps cli.run_command: records each argv, and lets a test fake answers."""

    def __init__(self, monkeypatch, fake=None):
        self.calls: list[list[str]] = []
        self.fake = fake
        real = cli.run_command

        def run(argv, timeout, env=None, user=None):
            # The command by its name, wherever the pool's bin_dir puts it.
            argv = [os.path.basename(argv[0]), *argv[1:]]
            self.calls.append(list(argv))
            answer = self.fake(argv) if self.fake else None
            if answer is None:
                return real([current().command(argv[0]), *argv[1:]], timeout, env, user=user)
            return answer

        monkeypatch.setattr(cli, "run_command", run)

    def count(self, command: str) -> int:
        return sum(1 for argv in self.calls if argv[0] == command)


def fake_answer(command: str, stdout: str = "", stderr: str = "", returncode: int = 0):
    """A fake for CallLog: ``command`` answers this; every other command is real."""
    def fake(argv):
        if argv[0] == command:
            return subprocess.CompletedProcess(argv, returncode, stdout, stderr)
        return None
    return fake


@pytest.fixture(scope="module", autouse=True)
def cluster(slurm_cluster):
    require_cluster()
    return slurm_cluster


both_clusters = pytest.mark.both_slurm_clusters


def sbatch_executor(root, **settings) -> SlurmExecutor:
    return SlurmExecutor("slurm-test", {"work_root": str(root), "partition": "main",
                                        "user": JOB_USER, "bin_dir": current().bin_dir,
                                        **settings})


@pytest.fixture
def work_root():
    """A work root the jobs' user can reach (pytest's tmp_path is root's alone)."""
    with reachable_dir() as path:
        yield path / "work"


@pytest.fixture
def executor(work_root):
    return sbatch_executor(work_root)


@pytest.fixture
def make_spec():
    names: set[str] = set()

    def make(kind, target="slurm", **fields):
        spec = new_spec(kind, target, "slurm-test", **fields)
        names.add(spec.job_name)
        return spec

    yield make
    cancel_named(names)


@pytest.fixture(scope="module", autouse=True)
def timed_out_job(cluster):
    """A job with a one-minute limit, submitted when the module starts: Slurm counts limits in
    minutes and checks them every 30 s (about 85 s here), so the other tests run meanwhile and
    the last test checks it. On 22.05 only: on 24.11 the few tests of both clusters end long
    before the limit, so the wait would add about a minute to CI; test_slurm_rest.py times a
    job out on 24.11, where its version's states and exit codes are read, while this target
    reads squeue's and sacct's same text on both releases."""
    if cluster.release != "22.05":
        yield None
        return
    with reachable_dir() as root:
        executor = sbatch_executor(root)
        spec = over_its_time_limit("slurm", "slurm-test")
        yield executor, spec, executor.submit(spec)
        cancel_named({spec.job_name})


@both_clusters
def test_one_squeue_answers_for_many_jobs(executor, make_spec, monkeypatch):
    specs = [make_spec("sleep") for _ in range(20)]
    items = [item_for(s, executor.submit(s).handle) for s in specs]
    calls = CallLog(monkeypatch)
    events = executor.poll(items)
    assert calls.count("squeue") == 1
    assert len(calls.calls) == 1  # no sacct either: every job is still listed
    assert all(e.state in (State.SUBMITTED, State.RUNNING) for e in events)


@both_clusters
def test_job_gone_from_squeue_is_read_from_sacct_before_deciding(executor, make_spec,
                                                                 monkeypatch):
    spec = make_spec("fail")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, ended)
    (executor.work_dir(spec.process_id) / "exit_code").unlink()  # sacct alone must tell
    calls = CallLog(monkeypatch, fake_answer("squeue"))  # one empty squeue answer
    (event,) = executor.poll([item])
    assert calls.count("squeue") == 1
    assert calls.count("sacct") == 1
    assert event.state == State.FAILED
    assert event.exit_code == 3


def test_job_gone_from_squeue_and_sacct_is_read_from_its_exit_code_file(make_spec, work_root,
                                                                        monkeypatch):
    executor = sbatch_executor(work_root, accounting="none")
    spec = make_spec("fail")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, ended)
    CallLog(monkeypatch, fake_answer("squeue"))
    (event,) = executor.poll([item])
    assert event.state == State.FAILED
    assert event.exit_code == 3


def test_running_job_missing_from_one_squeue_answer_is_not_decided(executor, make_spec,
                                                                   monkeypatch):
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, lambda e: e.state == State.RUNNING)
    calls = CallLog(monkeypatch, fake_answer("squeue"))
    (event,) = executor.poll([item])
    assert calls.count("sacct") == 1
    assert event.state is None  # within the grace period: no verdict
    assert not event.missing
    monkeypatch.undo()
    (event,) = executor.poll([item])
    assert event.state == State.RUNNING


def test_failed_squeue_raises_instead_of_failing_jobs(executor, make_spec, monkeypatch):
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    CallLog(monkeypatch, fake_answer(
        "squeue", stderr="squeue: error: Unable to contact slurm controller", returncode=1))
    with pytest.raises(ExecutorError, match="squeue failed"):
        executor.poll([item_for(spec, sub.handle)])


def test_failed_sacct_raises_instead_of_deciding(executor, make_spec, monkeypatch):
    spec = make_spec("ok")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, ended)

    def broken(argv):
        if argv[0] == "squeue":
            return subprocess.CompletedProcess(argv, 0, "", "")
        if argv[0] == "sacct":
            return subprocess.CompletedProcess(argv, 1, "", "sacct: error: Problem talking")
        return None

    CallLog(monkeypatch, broken)
    with pytest.raises(ExecutorError, match="sacct failed"):
        executor.poll([item])


def test_a_job_submitted_before_the_worker_kept_its_handle_is_found_by_name(executor,
                                                                            make_spec):
    spec = make_spec("sleep")
    first = executor.submit(spec)
    (executor.work_dir(spec.process_id) / "handle").unlink()  # the worker died there
    (executor.work_dir(spec.process_id) / "claim").unlink()
    second = executor.submit(spec)
    assert second.handle.split(":")[:2] == first.handle.split(":")[:2]
    listed = slurm("squeue", "-h", f"--name={spec.job_name}", "-o", "%i").stdout.split()
    assert len(listed) == 1


def test_released_job_is_still_found_so_a_late_duplicate_starts_nothing(executor, make_spec):
    spec = make_spec("ok")
    sub = executor.submit(spec)
    poll_until(executor, item_for(spec, sub.handle), ended)
    executor.release(sub.handle)
    assert not (executor.work_dir(spec.process_id) / "output.log").exists()
    assert executor.submit(spec).handle == sub.handle
    (event,) = executor.poll([item_for(spec, sub.handle)])
    assert event.state == State.SUCCEEDED


@pytest.mark.parametrize("partition", ["nosuchpartition", "main\n#SBATCH --wrap=evil"])
def test_a_bad_partition_is_a_permanent_error(make_spec, work_root, partition):
    executor = sbatch_executor(work_root, partition=partition)
    with pytest.raises(ExecutorError) as raised:
        executor.submit(make_spec("ok"))
    assert raised.value.permanent
    assert "partition" in str(raised.value)


@pytest.mark.parametrize("said, permanent", [
    ("sbatch: error: Batch job submission failed: Invalid partition name specified", True),
    ("Batch job submission failed: Requested node configuration is not available", True),
    # For a few seconds after slurmctld restarts, until the node registers again.
    ("Batch job submission failed: Required node not available (down, drained or reserved)",
     False),
    ("sbatch: error: Batch job submission failed: Unable to contact slurm controller", False),
])
def test_only_errors_that_last_make_a_submission_fail(said, permanent):
    assert submit_error(said).permanent is permanent


def test_the_shipped_hello_slurm_pipeline_runs(make_spec, work_root):
    pipeline, settings = shipped_pipeline("hello-slurm", work_root)
    executor = SlurmExecutor(pipeline["pool"], settings)
    spec = make_spec("hello", command=pipeline["run"]["command"], config={"name": "Ada"})
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.SUCCEEDED
    assert f"process {spec.process_id}" in full_log(events)
    assert '{"name": "Ada"}' in full_log(events)


@both_clusters
def test_a_pipeline_script_runs_in_the_work_dir(executor, make_spec):
    spec = make_spec("script", command=[], script='echo "script in $(pwd)"\nexit 3\n')
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.FAILED
    assert events[-1].exit_code == 3
    assert f"script in {executor.work_dir(spec.process_id)}" in full_log(events)


@pytest.mark.parametrize("user, said", [
    (None, "this worker runs as root and Slurm jobs never do"),
    ("root", "is root (uid 0)"),
    ("0", "is root (uid 0)"),
    ("no-such-user-here", "there is no user 'no-such-user-here'"),
])
def test_a_root_worker_submits_nothing_unless_jobs_run_as_an_unprivileged_user(
    make_spec, work_root, monkeypatch, user, said
):
    monkeypatch.delenv("ORCH_SLURM_USER", raising=False)
    executor = sbatch_executor(work_root, user=user)
    spec = make_spec("ok")
    with pytest.raises(ExecutorError) as raised:
        executor.submit(spec)
    assert raised.value.permanent
    assert str(raised.value).startswith("settings.user: ")
    assert said in str(raised.value)
    assert not work_root.exists()  # nothing written, nothing submitted
    assert slurm("squeue", "-h", f"--name={spec.job_name}", "-o", "%i").stdout.strip() == ""


def test_a_work_root_the_jobs_user_cannot_reach_is_refused_by_name(make_spec, tmp_path):
    executor = sbatch_executor(tmp_path / "work")  # pytest's tmp dirs are root's alone
    spec = make_spec("ok")
    with pytest.raises(ExecutorError) as raised:
        executor.submit(spec)
    assert raised.value.permanent
    assert str(raised.value).startswith("settings.work_root: ")
    assert JOB_USER in str(raised.value)
    assert slurm("squeue", "-h", f"--name={spec.job_name}", "-o", "%i").stdout.strip() == ""


@pytest.mark.parametrize("user", ["root", "0", "orch slurm"])
def test_a_pool_file_naming_root_as_the_jobs_user_is_refused(user):
    [error] = settings_errors("slurm", {"user": user})
    assert error.startswith("settings.user: must be a user name or uid other than root")
    assert settings_errors("slurm", {"user": JOB_USER}) == []


@both_clusters
def test_the_jobs_belong_to_the_pools_user(executor, make_spec):
    spec = make_spec("sleep")
    executor.submit(spec)
    owner = slurm("squeue", "-h", f"--name={spec.job_name}", "-o", "%u").stdout.strip()
    assert owner == JOB_USER


@both_clusters
class TestSlurmContract(SlurmContract):
    pass


def test_a_queued_job_is_seen_running_by_its_follow_ups_long_before_the_poll(
        executor, make_spec, monkeypatch):
    """With a 30 s poll interval, the worker's follow-ups (one squeue of just the jobs it
    follows per step) still send RUNNING about as soon as Slurm starts the job."""
    from workers import follow_ups

    monkeypatch.setenv("ORCH_POLL_INTERVAL_S", "30")
    calls = CallLog(monkeypatch)
    sent = []
    followups = follow_ups.FollowUps(send=sent.extend,
                                     executor=lambda target, pool, settings: executor)
    specs = [make_spec("sleep")]  # one: the module's time-limit job holds the other core
    for spec in specs:
        submission = executor.submit(spec)
        assert submission.state == State.SUBMITTED  # sbatch says only that it is queued
        followups.follow(pool="slurm-test", target="slurm", settings={}, source="worker:t",
                         item=item_for(spec, submission.handle))
    deadline = time.monotonic() + 25
    while len(sent) < len(specs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(e.process_id for e in sent) == sorted(s.process_id for s in specs)
    assert {e.state for e in sent} == {State.RUNNING}
    for spec in specs:
        (event,) = executor.poll([item_for(spec, executor.find(spec).handle)])
        assert event.state == State.RUNNING  # what the beat's poll says agrees
    assert len(followups) == 0
    names = {spec.job_name for spec in specs}
    asked = [set(arg.removeprefix("--name=").split(",")) for argv in calls.calls
             if argv[0] == "squeue" for arg in argv if arg.startswith("--name=")]
    assert asked
    assert all(n <= names for n in asked)


def test_more_names_than_one_squeue_argument_holds_take_one_squeue(executor, make_spec,
                                                                    monkeypatch):
    """A poll of a whole pool (10,000 jobs in one message) asks squeue once, for every job,
    and picks ours out: never one squeue per few thousand names."""
    spec = make_spec("sleep")
    handle = executor.submit(spec).handle
    calls = CallLog(monkeypatch)
    strangers = [f"orch-{n:08d}-0000-0000-0000-000000000000" for n in range(5000)]
    records = executor.live_jobs([*strangers, spec.job_name])
    assert calls.count("squeue") == 1
    assert not any(arg.startswith("--name=") for arg in calls.calls[0])
    assert [(r.job_id, r.name) for r in records] == [(handle.split(":")[0], spec.job_name)]


# Last: it waits for the job timed_out_job submitted as the module began. 22.05 only (see
# timed_out_job).
class TestSlurmTimeLimit(SlurmTimeLimit):
    pass
