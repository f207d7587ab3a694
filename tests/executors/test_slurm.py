"""The slurm target (sbatch, squeue, scancel, sacct) against the real one-node cluster.

The cluster is started by ``deploy/slurm-cluster.sh start`` before the tests (CI does); these
tests do not start it, and fail with that advice when it does not answer. Where a test needs
Slurm to misbehave (a failed or an empty squeue) it wraps the one command-running function and
lets every other call reach the real cluster.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.executors.contract import ExecutorContract, ended, full_log, item_for, poll_until
from workers.contract import JobSpec, Resources, State
from workers.executors import slurm_common
from workers.executors.base import ExecutorError
from workers.executors.slurm import SlurmExecutor

COMMANDS = {
    "ok": ["sh", "-c", 'echo "hello from $ORCH_PROCESS_ID"'],
    "fail": ["sh", "-c", "echo failing; exit 3"],
    "sleep": ["sleep", "60"],
    "config": ["sh", "-c", 'cat "$ORCH_CONFIG_FILE"'],
}
START_ADVICE = "start it first, as root: deploy/slurm-cluster.sh start"
ROOT = Path(__file__).resolve().parents[2]


def slurm(*argv: str) -> subprocess.CompletedProcess:
    """A Slurm command of the test itself (not of the executor under test)."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def require_cluster() -> None:
    """Fail (never skip) with advice when the cluster does not answer."""
    try:
        ping = slurm("scontrol", "ping")
    except FileNotFoundError:
        pytest.fail(f"Slurm is not installed on this machine: {START_ADVICE}")
    if ping.returncode != 0 or "is UP" not in ping.stdout:
        pytest.fail(f"slurmctld does not answer ({(ping.stdout + ping.stderr).strip()}): "
                    f"{START_ADVICE}")
    states = slurm("sinfo", "-h", "-o", "%t").stdout.split()
    if not any(s in ("idle", "mix", "alloc", "comp") for s in states):
        pytest.fail(f"no Slurm node is up (sinfo says {states}): {START_ADVICE}")


def cancel_named(names: set[str]) -> None:
    """Cancel every job still held under one of ``names``: tests leave no job behind."""
    if not names:
        return
    listed = slurm("squeue", "-h", "-o", "%i %j", f"--name={','.join(sorted(names))}").stdout
    ids = [line.split()[0] for line in listed.splitlines() if line.strip()]
    if ids:
        slurm("scancel", *ids)


def hostile_config(tmp_path) -> tuple[dict, list]:
    """A config whose values would run code if pasted into a shell line, and the files
    that code would create."""
    marks = [tmp_path / f"pwned{i}" for i in range(3)]
    return {
        "subst": f"$(touch {marks[0]})",
        "backticks": f"`touch {marks[1]}`",
        "quotes": f"it's \"quoted\"'; touch {marks[2]}; echo '",
        "newlines": "line one\nline two\n#SBATCH --wrap=evil\n",
        "nested": {"list": ["$HOME", "${PATH}", "\\n"]},
    }, marks


def shipped_pipeline(name: str, work_root) -> tuple[dict, dict]:
    """A pipeline file of pipelines/ and its pool's settings, with a test's work root."""
    pipeline = yaml.safe_load((ROOT / "pipelines" / f"{name}.yaml").read_text())
    pool = yaml.safe_load((ROOT / "pipelines" / "pools" / f"{pipeline['pool']}.yaml").read_text())
    return pipeline, {**pool["settings"], "work_root": str(work_root)}


class CallLog:
    """Wraps slurm_common.run_command: records each argv, and lets a test fake answers."""

    def __init__(self, monkeypatch, fake=None):
        self.calls: list[list[str]] = []
        self.fake = fake
        real = slurm_common.run_command

        def run(argv, timeout, env=None):
            self.calls.append(list(argv))
            answer = self.fake(argv) if self.fake else None
            return answer if answer is not None else real(argv, timeout, env)

        monkeypatch.setattr(slurm_common, "run_command", run)

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
def cluster():
    require_cluster()


@pytest.fixture
def executor(tmp_path):
    return SlurmExecutor("slurm-test", {"work_root": str(tmp_path / "work"), "partition": "main"})


@pytest.fixture
def make_spec():
    names: set[str] = set()

    def make(kind, target="slurm", **fields):
        fields.setdefault("command", COMMANDS.get(kind, []))
        fields.setdefault("resources", Resources(cpus=1, memory_mb=128, time_limit_s=600))
        spec = JobSpec(process_id=str(uuid.uuid4()), pipeline=kind, version=1, target=target,
                       pool="slurm-test", **fields)
        names.add(spec.job_name)
        return spec

    yield make
    cancel_named(names)


@pytest.fixture(scope="module", autouse=True)
def timed_out_job(cluster, tmp_path_factory):
    """A job with a one-minute limit, submitted when the module starts: Slurm counts limits in
    minutes and checks them every 30 s (about 85 s here), so the other tests run meanwhile and
    the last test checks it."""
    executor = SlurmExecutor("slurm-test", {"work_root": str(tmp_path_factory.mktemp("limit"))})
    spec = JobSpec(process_id=str(uuid.uuid4()), pipeline="limit", version=1, target="slurm",
                   pool="slurm-test", command=["sleep", "300"],
                   resources=Resources(cpus=1, memory_mb=128, time_limit_s=60))
    yield executor, spec, executor.submit(spec)
    cancel_named({spec.job_name})


@pytest.fixture
def unknown_handle():
    return f"99999999:orch-{uuid.uuid4()}:{int(time.time()) - 3600}"


class TestSlurmContract(ExecutorContract):
    pass


def test_scancel_stops_the_job(executor, make_spec):
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, lambda e: e.state == State.RUNNING)
    executor.cancel(sub.handle)
    events = poll_until(executor, item, ended)
    assert events[-1].state == State.STOPPED
    assert "CANCELLED" in events[-1].message


def test_config_stays_literal_data(executor, make_spec, tmp_path):
    config, marks = hostile_config(tmp_path)
    # The pipeline's own argv is quoted word by word too.
    show = 'cat "$ORCH_CONFIG_FILE"; echo; printf "%s\\n" "$1"'
    spec = make_spec("config", config=config,
                     command=["sh", "-c", show, "sh", f"$(touch {marks[0]})"])
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.SUCCEEDED
    shipped = full_log(events)
    assert json.loads(shipped.splitlines()[0]) == config
    assert f"$(touch {marks[0]})" in shipped
    assert not [m for m in marks if m.exists()]
    batch = (executor.work_dir(spec.process_id) / "job.sh").read_text()
    assert "pwned1" not in batch and "line two" not in batch


def test_one_squeue_answers_for_many_jobs(executor, make_spec, monkeypatch):
    specs = [make_spec("sleep") for _ in range(20)]
    items = [item_for(s, executor.submit(s).handle) for s in specs]
    calls = CallLog(monkeypatch)
    events = executor.poll(items)
    assert calls.count("squeue") == 1
    assert len(calls.calls) == 1  # no sacct either: every job is still listed
    assert all(e.state in (State.SUBMITTED, State.RUNNING) for e in events)


def test_job_gone_from_squeue_is_read_from_sacct_before_deciding(executor, make_spec,
                                                                 monkeypatch):
    spec = make_spec("fail")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, ended)
    (executor.work_dir(spec.process_id) / "exit_code").unlink()  # sacct alone must tell
    calls = CallLog(monkeypatch, fake_answer("squeue"))  # one empty squeue answer
    (event,) = executor.poll([item])
    assert calls.count("squeue") == 1 and calls.count("sacct") == 1
    assert event.state == State.FAILED and event.exit_code == 3


def test_job_gone_from_squeue_and_sacct_is_read_from_its_exit_code_file(make_spec, tmp_path,
                                                                        monkeypatch):
    executor = SlurmExecutor("slurm-test", {"work_root": str(tmp_path), "accounting": "none"})
    spec = make_spec("fail")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, ended)
    CallLog(monkeypatch, fake_answer("squeue"))
    (event,) = executor.poll([item])
    assert event.state == State.FAILED and event.exit_code == 3


def test_running_job_missing_from_one_squeue_answer_is_not_decided(executor, make_spec,
                                                                   monkeypatch):
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, lambda e: e.state == State.RUNNING)
    calls = CallLog(monkeypatch, fake_answer("squeue"))
    (event,) = executor.poll([item])
    assert calls.count("sacct") == 1
    assert event.state is None and not event.missing  # within the grace period: no verdict
    monkeypatch.undo()
    (event,) = executor.poll([item])
    assert event.state == State.RUNNING


def test_a_job_that_now_has_our_id_and_another_name_is_not_ours(executor, unknown_handle):
    other = f"other-{uuid.uuid4()}"
    job_id = slurm("sbatch", "--parsable", f"--job-name={other}", "--mem=64M",
                   "--output=/dev/null", "--wrap=sleep 60").stdout.strip()
    assert job_id.isdigit()
    try:
        _, name, submitted = unknown_handle.split(":")
        handle = f"{job_id}:{name}:{submitted}"
        (event,) = executor.poll([item_for(JobSpec(name[5:], "p", 1, "slurm", "t"), handle)])
        assert event.missing and event.state is None
        executor.cancel(handle)
        state = slurm("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip()
        assert state in ("PENDING", "RUNNING")  # the stranger's job was left alone
    finally:
        slurm("scancel", job_id)


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
def test_a_bad_partition_is_a_permanent_error(make_spec, tmp_path, partition):
    executor = SlurmExecutor("slurm-test", {"work_root": str(tmp_path), "partition": partition})
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
    assert slurm_common.submit_error(said).permanent is permanent


def test_the_shipped_hello_slurm_pipeline_runs(make_spec, tmp_path):
    pipeline, settings = shipped_pipeline("hello-slurm", tmp_path)
    executor = SlurmExecutor(pipeline["pool"], settings)
    spec = make_spec("hello", command=pipeline["run"]["command"], config={"name": "Ada"})
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.SUCCEEDED
    assert f"process {spec.process_id}" in full_log(events)
    assert '{"name": "Ada"}' in full_log(events)


def test_a_pipeline_script_runs_in_the_work_dir(executor, make_spec):
    spec = make_spec("script", command=[], script='echo "script in $(pwd)"\nexit 3\n')
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.FAILED and events[-1].exit_code == 3
    assert f"script in {executor.work_dir(spec.process_id)}" in full_log(events)


def test_time_limit_fails_the_job_with_the_reason(timed_out_job):
    executor, spec, sub = timed_out_job
    events = poll_until(executor, item_for(spec, sub.handle), ended, timeout=180)
    assert events[-1].state == State.FAILED
    assert "time limit" in events[-1].message
    assert "TIMEOUT" in events[-1].message
