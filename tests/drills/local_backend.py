"""The local target as the drills see it: jobs are detached processes on this host."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from pathlib import Path

from tests.drills.harness import Backend
from tests.work_roots import reachable_work_root


class LocalBackend(Backend):
    """Local processes. Each job appends ``start <process id> <pid>`` to a ledger outside its
    work dir (work dirs are emptied once a job ends), so a job started twice shows twice."""

    target = "local"
    pool = "local"

    def __init__(self, run_dir: Path):
        # Outside pytest's private tmp dir, the ledger writable by all: jobs run as users of
        # their own.
        self.shared = reachable_work_root("orch-drill-local-")
        self.work_root = self.shared / "work"
        self.ledger = self.shared / "ledger"
        self.work_root.mkdir(mode=0o711)
        self.ledger.touch()
        self.ledger.chmod(0o666)

    def write_pipelines(self, directory: Path) -> None:
        (directory / "pools").mkdir(parents=True, exist_ok=True)
        (directory / "pools" / "local.yaml").write_text(
            "name: local\ntarget: local\ncapacity: 32\nqueued_limit: 3s\nsettings: {}\n")
        script = (
            "import json, os, time\n"
            "config = json.load(open(os.environ['ORCH_CONFIG_FILE']))\n"
            "line = f\"start {os.environ['ORCH_PROCESS_ID']} {os.getpid()}\\n\"\n"
            "fd = os.open(os.environ['DRILL_LEDGER'], os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
            "os.write(fd, line.encode())\n"
            "os.close(fd)\n"
            "print(line, end='', flush=True)\n"
            "time.sleep(config['seconds'])\n"
            "print('done', flush=True)\n"
            "raise SystemExit(config['exit_code'])\n"
        )
        definition = {
            "name": "drill-job", "version": "1", "target": "local", "pool": "local",
            "description": "Notes its start in a ledger, sleeps, exits with the given code.",
            "run": {"command": ["python3", "-c", script],
                    "env": {"DRILL_LEDGER": str(self.ledger)}},
            "resources": {"cpus": 1, "memory": "64M", "time_limit": "5m"},
            "config_schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"seconds": {"type": "number", "minimum": 0},
                               "exit_code": {"type": "integer"}},
            },
            "defaults": {"seconds": 1, "exit_code": 0},
        }
        (directory / "drill-job.yaml").write_text(json.dumps(definition, indent=1))

    def worker_env(self) -> dict[str, str]:
        return {"ORCH_WORK_ROOT": str(self.work_root)}

    def jobs(self, process_id: str) -> int:
        return sum(1 for line in self.ledger.read_text().splitlines()
                   if line.split()[1:2] == [process_id])

    def _job_pids(self) -> dict[int, str]:
        """Live processes whose command line or working directory is in this work root."""
        root = str(self.work_root)
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                cwd = os.readlink(entry / "cwd")
                if (entry / "stat").read_text().split(") ")[1][0] == "Z":
                    continue  # a zombie has ended; its parent reaps it
            except OSError:
                continue
            if root in cmdline or cwd.startswith(root):
                found[int(entry.name)] = cmdline.strip()
        return found

    def orphans(self) -> list[str]:
        return [f"{pid}: {cmd}" for pid, cmd in self._job_pids().items()]

    def cleanup(self) -> None:
        for pid in self._job_pids():  # jobs this drill started, by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.shared, ignore_errors=True)
