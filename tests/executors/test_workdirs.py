"""The run-dir helpers every file-based target shares: a job that owns files in its run dir
cannot make the worker write through, or read through, a link it planted."""

from __future__ import annotations

import os

import pytest

from workers.executors import workdirs
from workers.executors.base import ExecutorError


def test_write_atomic_replaces_a_planted_link_instead_of_writing_through_it(tmp_path):
    secret = tmp_path / "worker.key"
    secret.write_text("the worker's key")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "exit_code").symlink_to(secret)
    workdirs.write_atomic(run_dir / "exit_code", "0")
    assert secret.read_text() == "the worker's key"
    assert not (run_dir / "exit_code").is_symlink()
    assert (run_dir / "exit_code").read_text() == "0"
    assert [p.name for p in run_dir.iterdir()] == ["exit_code"]  # no draft left behind


def test_reads_never_follow_a_link_or_hang_on_a_fifo(tmp_path):
    secret = tmp_path / "worker.key"
    secret.write_text("the worker's key")
    (tmp_path / "output.log").symlink_to(secret)
    os.mkfifo(tmp_path / "code")
    assert workdirs.read_from(tmp_path / "output.log", 0, 100) == b""
    assert workdirs.read_small(tmp_path / "code") is None
    assert workdirs.read_small(tmp_path / "missing") is None


def test_read_from_an_offset_and_small_files(tmp_path):
    (tmp_path / "output.log").write_bytes(b"0123456789")
    assert workdirs.read_from(tmp_path / "output.log", 4, 3) == b"456"
    (tmp_path / "slurm_job_id").write_text(" 42\n")
    assert workdirs.read_small(tmp_path / "slurm_job_id") == "42"


def test_clean_run_dir_keeps_the_markers_and_removes_links_without_following(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep-me").write_text("x")
    run_dir = tmp_path / "run"
    (run_dir / "work").mkdir(parents=True)
    (run_dir / "work" / "result").write_text("r")
    (run_dir / "exit_code").write_text("0")
    (run_dir / "output.log").write_text("log")
    (run_dir / "link").symlink_to(outside, target_is_directory=True)
    workdirs.clean_run_dir(run_dir, keep={"exit_code"})
    assert sorted(p.name for p in run_dir.iterdir()) == ["exit_code"]
    assert (outside / "keep-me").exists()


def test_keep_work_dir_reads_booleans_and_environment_words():
    assert workdirs.keep_work_dir({"keep_work_dir": True})
    assert workdirs.keep_work_dir({"keep_work_dir": "yes"})
    assert not workdirs.keep_work_dir({"keep_work_dir": "false"})
    assert not workdirs.keep_work_dir({"keep_work_dir": None})
    assert not workdirs.keep_work_dir({})


def test_write_atomic_gives_the_mode_asked_and_the_workers_alone_by_default(tmp_path):
    workdirs.write_atomic(tmp_path / "exit_code", "0")
    workdirs.write_atomic(tmp_path / "config.json", "{}", 0o644)  # a container's user reads it
    assert (tmp_path / "exit_code").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("name", ["", "../etc", "a/b", ".hidden"])
def test_a_run_dir_never_leaves_or_hides_in_the_work_root(tmp_path, name):
    with pytest.raises(ExecutorError) as raised:
        workdirs.run_dir_of(tmp_path, name)
    assert raised.value.permanent


def test_a_process_ids_run_dir_is_under_the_work_root(tmp_path):
    assert workdirs.run_dir_of(tmp_path, "0b5e-42") == tmp_path / "0b5e-42"
