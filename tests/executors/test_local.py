"""The local target passes the shared executor contract, plus what is its own."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest

from tests.executors.contract import ExecutorContract, ended, full_log, item_for, poll_until
from tests.executors.data_jobs import DATASET, check_data_round_trip, data_spec, put_dataset
from tests.work_roots import reachable_work_root
from workers.contract import JobSpec, Resources, State
from workers.executors.base import ExecutorError
from workers.executors.local import LocalExecutor
from workers.pool_settings import settings_errors

# A Python any user may run (jobs run as users of their own; the test's may be private).
PYTHON = "python3"
COMMANDS = {
    "ok": [PYTHON, "-c", "import os; print('hello from', os.environ['ORCH_PROCESS_ID'])"],
    "fail": [PYTHON, "-c", "raise SystemExit(3)"],
    "sleep": [PYTHON, "-c", "import time; time.sleep(60)"],
}


@pytest.fixture
def work_root():
    path = reachable_work_root()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def executor(work_root):
    return LocalExecutor("local", {"work_root": str(work_root)})


@pytest.fixture
def make_spec():
    def make(kind, **fields):
        fields.setdefault("command", COMMANDS.get(kind, []))
        return JobSpec(
            process_id=str(uuid.uuid4()), pipeline=kind, version=1, target="local",
            pool="local", **fields,
        )

    return make


@pytest.fixture
def unknown_handle():
    return str(uuid.uuid4())


class TestLocalContract(ExecutorContract):
    pass


def test_config_reaches_the_job_as_a_file_never_as_code(executor, make_spec, work_root):
    hostile = "$(touch pwned); `touch pwned`; rm -rf /"
    read_config = "import json, os; print(json.load(open(os.environ['ORCH_CONFIG_FILE'])))"
    spec = make_spec("config", command=[PYTHON, "-c", read_config],
                     config={"name": hostile})
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.SUCCEEDED
    assert hostile in full_log(events)
    assert not any(work_root.rglob("pwned"))
    config = work_root / spec.process_id / "work" / "config.json"
    assert json.loads(config.read_text()) == spec.config


def test_time_limit_fails_the_job_with_the_reason(executor, make_spec):
    spec = make_spec("sleep", resources=Resources(time_limit_s=1))
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended, timeout=30)
    assert events[-1].state == State.FAILED
    assert "time limit" in events[-1].message


def test_a_missing_command_is_a_permanent_error_naming_it(executor, make_spec):
    spec = make_spec("bad", command=["/nonexistent/tool", "--flag"])
    with pytest.raises(ExecutorError) as raised:
        executor.submit(spec)
    assert raised.value.permanent
    assert "/nonexistent/tool" in str(raised.value)


def test_job_keeps_running_when_the_worker_is_gone(executor, make_spec):
    """A job is not a child of the worker: a fresh executor (a restarted worker) finds it."""
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    restarted = LocalExecutor("local", executor.settings)
    assert restarted.find(spec).handle == sub.handle
    (event,) = restarted.poll([item_for(spec, sub.handle)])
    assert event.state == State.RUNNING
    restarted.cancel(sub.handle)


def test_released_job_is_still_found_so_a_late_duplicate_starts_nothing(executor, make_spec):
    spec = make_spec("ok")
    sub = executor.submit(spec)
    poll_until(executor, item_for(spec, sub.handle), ended)
    executor.release(sub.handle)
    assert executor.submit(spec).handle == sub.handle
    (event,) = executor.poll([item_for(spec, sub.handle)])
    assert event.state == State.SUCCEEDED


def test_a_pool_that_keeps_work_dirs_keeps_a_released_runs_files(work_root, make_spec):
    executor = LocalExecutor("local", {"work_root": str(work_root), "keep_work_dir": True})
    spec = make_spec("ok", config={"kept": True})
    sub = executor.submit(spec)
    poll_until(executor, item_for(spec, sub.handle), ended)
    executor.release(sub.handle)
    run_dir = work_root / spec.process_id
    assert "hello from" in (run_dir / "output.log").read_text()
    assert json.loads((run_dir / "work" / "config.json").read_text()) == spec.config
    assert executor.submit(spec).handle == sub.handle  # still found: nothing starts again
    assert settings_errors("local", {"keep_work_dir": True}) == []


def test_a_released_run_keeps_only_its_markers(executor, make_spec, work_root):
    spec = make_spec("ok")
    sub = executor.submit(spec)
    poll_until(executor, item_for(spec, sub.handle), ended)
    executor.release(sub.handle)
    left = {path.name for path in (work_root / spec.process_id).iterdir()}
    assert "exit_code" in left
    assert left <= {"pid", "exit_code", "claim"}


def test_deliveries_writing_one_handle_at_once_all_succeed(tmp_path):
    """Two deliveries of one job spec may keep the same handle at the same moment (the Slurm
    targets' find does): neither may fail on the other's temporary file."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from workers.executors.workdirs import write_atomic

    path = tmp_path / "handle"
    start = Barrier(8)

    def write(n: int) -> None:
        start.wait()
        for i in range(200):
            write_atomic(path, f"{n}:{i}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))  # re-raises any writer's error
    assert path.read_text().endswith(":199")
    assert [p.name for p in tmp_path.iterdir()] == ["handle"]


@pytest.mark.parametrize("settings, named", [
    ({"job_user": "root"}, "job_user"), ({"job_user": "0"}, "job_user"),
    ({"job_user": "1000:0"}, "job_user"), ({"job_user": "a b"}, "job_user"),
    ({"job_uids": "0-70000"}, "job_uids"), ({"job_uids": "70000-60000"}, "job_uids"),
])
def test_a_pool_cannot_make_root_or_system_users_its_jobs_users(settings, named):
    [error] = settings_errors("local", settings)
    assert error.startswith(f"settings.{named}: must be")


def test_a_pool_may_name_who_its_jobs_run_as():
    for user in ("dynamic", "worker", "orch-jobs", "2000", "2000:2000"):
        assert settings_errors("local", {"job_user": user, "job_uids": "100000-165535"}) == []


def test_a_job_reads_its_dataset_read_only_and_its_outputs_are_stored(
        executor, make_spec, work_root, tmp_path, monkeypatch):
    store, key = put_dataset(tmp_path / "store", monkeypatch)
    spec = data_spec(make_spec, PYTHON, key)
    inputs = str(work_root / spec.process_id / "inputs")
    check_data_round_trip(executor, spec, store, inputs)
    assert not (work_root / spec.process_id / "outputs").exists()  # released after
    assert not (work_root / spec.process_id / "inputs").exists()


def test_keep_work_dir_keeps_the_inputs_and_outputs_once_they_are_stored(
        make_spec, work_root, tmp_path, monkeypatch):
    executor = LocalExecutor("local", {"work_root": str(work_root), "keep_work_dir": True})
    store, key = put_dataset(tmp_path / "store", monkeypatch)
    spec = data_spec(make_spec, PYTHON, key)
    sub = executor.submit(spec)
    last = poll_until(executor, item_for(spec, sub.handle), ended)[-1]
    assert last.state == State.SUCCEEDED
    assert store.stat(f"outputs/{spec.process_id}/result.json") is not None
    executor.release(sub.handle)
    run_dir = work_root / spec.process_id
    assert (run_dir / "outputs" / "result.json").is_file()
    assert (run_dir / "inputs" / "input.txt").read_bytes() == DATASET


def test_jobs_start_through_one_starter_and_a_dead_starter_is_replaced(executor, make_spec):
    """No Python interpreter starts per job: every runner is a fork of the worker's one
    starter (same program); a starter that died is replaced by the next job's start."""
    import os
    import signal
    from pathlib import Path

    from workers.executors import local_starter

    def runner_and_starter(spec, handle):
        runner_pid = int((executor.work_dir(handle) / "pid").read_text().split()[0])
        starter = local_starter._starter._process
        return Path(f"/proc/{runner_pid}/cmdline").read_bytes(), starter

    specs = [make_spec("sleep") for _ in range(3)]
    first, second = (executor.submit(spec).handle for spec in specs[:2])
    first_cmdline, starter = runner_and_starter(specs[0], first)
    second_cmdline, same_starter = runner_and_starter(specs[1], second)
    assert starter is same_starter
    assert b"local_starter" in first_cmdline
    assert first_cmdline == second_cmdline
    assert b"local_runner" not in first_cmdline  # not an interpreter of its own
    os.kill(starter.pid, signal.SIGKILL)
    starter.wait()
    third = executor.submit(specs[2]).handle
    (event,) = executor.poll([item_for(specs[2], third)])
    assert event.state == State.RUNNING
    assert local_starter._starter._process.pid != starter.pid
    for spec, handle in zip(specs, (first, second, third), strict=True):
        (event,) = executor.poll([item_for(spec, handle)])
        assert event.state == State.RUNNING  # the starter's death ended no job
        executor.cancel(handle)


def test_a_job_under_a_work_root_reached_through_a_link_is_seen_running(work_root, make_spec):
    """The runner is told by its working directory, which the kernel shows with links
    resolved."""
    import os

    link = work_root.parent / f"{work_root.name}-link"
    os.symlink(work_root, link)
    try:
        executor = LocalExecutor("local", {"work_root": str(link)})
        spec = make_spec("sleep")
        handle = executor.submit(spec).handle
        (event,) = executor.poll([item_for(spec, handle)])
        assert event.state == State.RUNNING, event.message
        executor.cancel(handle)
    finally:
        link.unlink()
