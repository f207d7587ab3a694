"""The Slurm targets as the drills see them, on a private Slurm cluster.

Drill 7 restarts slurmctld, and once wipes its saved state, so it never uses the machine's
cluster: :class:`PrivateSlurm` starts one of its own with ``deploy/slurm-cluster.sh`` (22.05)
or ``deploy/slurm24-cluster.sh`` (24.11, from its root file system; its commands in the bin dir
it prints), config, state, logs and pids in a directory of its own, its own ports, and stops it
the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.drills.harness import Backend, sh_job, write_pipeline
from tests.drills.infra import free_port
from tests.e2e.stack import ROOT

SCRIPTS = {"22.05": ROOT / "deploy" / "slurm-cluster.sh",
           "24.11": ROOT / "deploy" / "slurm24-cluster.sh"}
# What slurm24-cluster.sh prints, by the names slurm-cluster.sh prints.
NAMES_24 = {"ORCH_SLURM24_RESTD_URL": "ORCH_SLURMRESTD_URL",
            "ORCH_SLURM24_TOKEN_FILE": "ORCH_SLURM_TOKEN_FILE",
            "ORCH_SLURM24_CONF": "SLURM_CONF", "ORCH_SLURM24_BIN_DIR": "bin_dir"}


class PrivateSlurm:
    """slurmctld, slurmd and slurmrestd of a cluster of their own, in a temporary directory."""

    def __init__(self, release: str = "22.05"):
        self.release = release
        self.script = SCRIPTS[release]
        # Not under pytest's private tmp dir: slurmrestd runs as another user and reads it.
        self.home = Path(tempfile.mkdtemp(prefix="orch-drill-slurm-"))
        self.port = _free_port_run(3)
        self.env: dict[str, str] = {}

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "ORCH_SLURM_HOME": str(self.home), "ORCH_SLURM_PORT": str(self.port)}
        env.pop("SLURM_CONF", None)
        env.pop("ORCH_SLURMRESTD_ADDR", None)
        return env

    def _client_env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": self.env["SLURM_CONF"]}

    def _script(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(["bash", str(self.script), *args], env=self._env(),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"{self.script.name} {' '.join(args)} failed: "
                               f"{done.stderr[-3000:]}")
        return done.stdout

    def start(self) -> PrivateSlurm:
        if self.release == "22.05" and shutil.which("slurmctld") is None:
            raise RuntimeError("drill 7 needs Slurm: run deploy/slurm-cluster.sh (as root)")
        exports = self._script("start", timeout=600).split("export ", 1)[1]
        env = dict(word.split("=", 1) for word in exports.split())
        self.env = {NAMES_24.get(k, k): v for k, v in env.items()}
        self.env.setdefault("ORCH_SLURM_USER", "orch-slurm")
        return self

    @property
    def bin_dir(self) -> str | None:
        """Where this cluster's commands are; None: the host's, on PATH."""
        return self.env.get("bin_dir")

    def command(self, name: str) -> str:
        return os.path.join(self.bin_dir, name) if self.bin_dir else name

    def restart_ctld(self, cold: bool = False, down_s: float = 0) -> subprocess.Popen:
        """Start restarting slurmctld (kept down ``down_s`` seconds); wait() on the answer.
        ``cold``: with its saved state wiped, so jobs are forgotten and ids start again."""
        env = {**self._env(), "ORCH_SLURM_DOWN_S": str(down_s)}
        argv = ["bash", str(self.script), "restart-ctld", *(["--cold"] if cold else [])]
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def controller_up(self) -> bool:
        done = subprocess.run([self.command("scontrol"), "ping"], env=self._client_env(),
                              capture_output=True, text=True, timeout=30)
        return "is UP" in done.stdout

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._script("stop")
        shutil.rmtree(self.home, ignore_errors=True)

    def run(self, *argv: str) -> str:
        """A Slurm client command against this cluster."""
        done = subprocess.run([self.command(argv[0]), *argv[1:]], env=self._client_env(),
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr}")
        return done.stdout


def _free_port_run(length: int) -> int:
    """A port whose ``length`` successors are free too (slurmctld, slurmd, slurmrestd)."""
    for _ in range(50):
        port = free_port()
        if port + length < 65536 and all(_port_free(port + i) for i in range(length)):
            return port
    raise RuntimeError(f"no {length} free ports in a row")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class SlurmBackend(Backend):
    """Slurm batch jobs on the private cluster, through the ``slurm`` (sbatch) or ``slurm_rest``
    (slurmrestd) executor, in a pool of the drill's own. Each job appends
    ``start <process id> <job id>`` to a ledger outside its work dir, so a job started twice
    shows twice; orphans are the pool's jobs Slurm still runs and job processes still alive."""

    pipeline = "drill-slurm-job"

    def __init__(self, cluster: PrivateSlurm, target: str = "slurm", lost_grace_s: int = 10):
        self.cluster, self.target, self.lost_grace_s = cluster, target, lost_grace_s
        self.pool = f"{target.replace('_', '-')}-drill-{os.getpid()}"
        # World-readable: jobs run as another user than the worker.
        self.root = Path(tempfile.mkdtemp(prefix="orch-drill-slurm-work-"))
        self.root.chmod(0o755)
        self.work_root = self.root / "work"
        self.work_root.mkdir()
        self.ledger = self.root / "ledger"
        self.ledger.touch()
        self.ledger.chmod(0o666)

    def write_pipelines(self, directory: Path) -> None:
        (directory / "pools").mkdir(parents=True, exist_ok=True)
        # Jobs run as the unprivileged user the cluster script made, with its token (REST).
        settings = {"partition": "main", "work_root": str(self.work_root),
                    "lost_grace_s": self.lost_grace_s, "user": self.cluster.env["ORCH_SLURM_USER"]}
        if self.target == "slurm_rest":
            settings.update(url=self.cluster.env["ORCH_SLURMRESTD_URL"],
                            token_file=self.cluster.env["ORCH_SLURM_TOKEN_FILE"],
                            request_timeout_s=10)
        else:  # only the sbatch target runs Slurm commands: this cluster's
            settings.update(command_timeout_s=10)
            if self.cluster.bin_dir:
                settings.update(bin_dir=self.cluster.bin_dir)
        pool = {"name": self.pool, "target": self.target, "capacity": 16,
                "queued_limit": "1m", "settings": settings}
        (directory / "pools" / f"{self.pool}.yaml").write_text(json.dumps(pool))
        script = sh_job('echo "start $ORCH_PROCESS_ID $SLURM_JOB_ID" >> "$DRILL_LEDGER"\n'
                        'echo "start $ORCH_PROCESS_ID $SLURM_JOB_ID"\n')
        write_pipeline(directory, self.pipeline, target=self.target, pool=self.pool,
                       description="Notes its start in a ledger, sleeps, exits with the given "
                                   "code.",
                       run={"command": ["sh", "-c", script],
                            "env": {"DRILL_LEDGER": str(self.ledger)}})

    def worker_env(self) -> dict[str, str]:
        # The control plane's grace too (every process of the drill gets this env): a job
        # reported missing is LOST 10 s later, not 60.
        return {"SLURM_CONF": self.cluster.env["SLURM_CONF"],
                "ORCH_LOST_GRACE_S": str(self.lost_grace_s)}

    def starts(self) -> list[tuple[str, str]]:
        """(process id, Slurm job id) of every job start, in order."""
        return [tuple(line.split()[1:3]) for line in self.ledger.read_text().splitlines()
                if len(line.split()) == 3]

    def jobs(self, process_id: str) -> int:
        return sum(1 for pid, _ in self.starts() if pid == process_id)

    def live_jobs(self) -> list[str]:
        """``id name state`` of every job of ours Slurm has not ended."""
        out = self.cluster.run("squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING",
                               "--format=%i %j %T")
        return [line for line in out.splitlines() if " orch-" in line]

    def _job_pids(self) -> list[int]:
        """Live processes working in this drill's work root (the jobs' shells and sleeps)."""
        root, found = str(self.work_root), []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (entry / "stat").read_text().split(") ")[1][0] == "Z":
                    continue
                if os.readlink(entry / "cwd").startswith(root):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def orphans(self) -> list[str]:
        return self.live_jobs() + [f"process {pid}" for pid in self._job_pids()]

    def cleanup(self) -> None:
        ids = [line.split()[0] for line in self.live_jobs()]
        if ids:
            self.cluster.run("scancel", *ids)
        for pid in self._job_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
