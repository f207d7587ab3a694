"""The project's own files stay with their owner: what ``var/`` holds (keys, the embedded
database and broker, logs, passwords) and ``.env`` are out of reach of the users local jobs
run as, whatever mode their writer gave them."""

from __future__ import annotations

import stat
from pathlib import Path

from workers import environment
from workers.sqlite_broker import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_var_is_reachable_by_path_only_and_everything_else_in_it_is_private(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(environment, "project_root", lambda: tmp_path)
    monkeypatch.delenv("ORCH_ENV_FILE", raising=False)
    var = tmp_path / "var"
    (var / "log").mkdir(parents=True)
    (var / "log" / "web.log").write_text("a log")
    (var / "work" / "local").mkdir(parents=True)
    (var / "jobs").mkdir()
    (var / "slurm24" / "bin").mkdir(parents=True)  # the 24.11 cluster's commands: the jobs'
    (var / "slurm24").chmod(0o755)                 # user runs sbatch from there
    for name in ("admin-password", "db.sqlite3", "secrets.key"):
        (var / name).write_text("private")
        (var / name).chmod(0o644)
    (tmp_path / ".env").write_text("DATABASE_URL=postgres://u:secret@db/orch\n")
    (tmp_path / ".env").chmod(0o644)

    environment.make_var_private(reachable=[var / "jobs" / "local"])

    assert mode(var) == 0o711
    assert {p.name: mode(p) for p in var.iterdir()} == {
        "log": 0o700, "work": 0o711, "jobs": 0o711, "slurm24": 0o711,
        "admin-password": 0o600, "db.sqlite3": 0o600, "secrets.key": 0o600}
    assert mode(tmp_path / ".env") == 0o600


def test_the_embedded_broker_file_and_its_journal_are_private(tmp_path):
    path = tmp_path / "var" / "broker.sqlite3"
    store = Store(str(path), visibility_timeout=60)
    store.put("pool.local", {"body": "a job spec"})
    files = sorted(tmp_path.glob("var/broker.sqlite3*"))
    assert {p.name for p in files} >= {"broker.sqlite3", "broker.sqlite3-wal"}
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_an_embedded_broker_file_made_before_is_made_private(tmp_path):
    path = tmp_path / "broker.sqlite3"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Store(str(path), visibility_timeout=60)
    assert mode(path) == 0o600


def test_an_entry_gone_between_the_listing_and_its_stat_is_passed_by(tmp_path, monkeypatch):
    """SQLite's journal comes and goes in var/ while a job starts: a worker making var/
    private at that moment once failed the job's submission with FileNotFoundError."""
    monkeypatch.setattr(environment, "project_root", lambda: tmp_path)
    monkeypatch.delenv("ORCH_ENV_FILE", raising=False)
    var = tmp_path / "var"
    var.mkdir()
    (var / "db.sqlite3").write_text("")
    (var / "db.sqlite3-journal").write_text("")
    listed = Path.iterdir

    def listing_then_gone(self):
        entries = list(listed(self))
        (var / "db.sqlite3-journal").unlink(missing_ok=True)  # gone right after the listing
        return iter(entries)

    monkeypatch.setattr(Path, "iterdir", listing_then_gone)
    environment.make_var_private()
    assert stat.S_IMODE((var / "db.sqlite3").stat().st_mode) == 0o600
