"""What both Slurm targets (sbatch and slurmrestd) must do, written once: the shared executor
contract plus Slurm's own rules (scancel, config as data, reused job ids, time limits), and the
helpers both test modules use. A module subclasses :class:`SlurmContract` (and
:class:`SlurmTimeLimit`) and provides the ``executor``, ``make_spec`` and ``timed_out_job``
fixtures (see tests/executors/contract.py).

Jobs run as the unprivileged user ``deploy/slurm-cluster.sh`` creates (``ORCH_SLURM_USER``,
orch-slurm), never as root: their run dirs live under :func:`reachable_dir` roots, since
pytest's own temporary dirs are private to root."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from tests.executors.contract import ExecutorContract, ended, full_log, item_for, poll_until
from tests.executors.data_jobs import check_data_round_trip, data_spec, put_dataset
from workers.contract import JobSpec, Resources, State
from workers.secrets import seal

COMMANDS = {
    "ok": ["sh", "-c", 'echo "hello from $ORCH_PROCESS_ID"'],
    "fail": ["sh", "-c", "echo failing; exit 3"],
    "sleep": ["sleep", "60"],
    "config": ["sh", "-c", 'cat "$ORCH_CONFIG_FILE"'],
}
ROOT = Path(__file__).resolve().parents[2]
JOB_USER = os.environ.get("ORCH_SLURM_USER") or "orch-slurm"  # what the deploy script creates


@dataclass(frozen=True)
class Cluster:
    """One of the real clusters the Slurm tests run on, as its deploy script prints it."""

    release: str
    script: str  # the deploy script that starts it
    url: str  # slurmrestd
    token_file: str  # the jobs' user's token
    rest_api_version: str  # what the executor must choose there
    bin_dir: str | None = None  # its commands; None: the host's, on PATH
    # The API versions its slurmrestd serves that the worker speaks, oldest first.
    rest_api_versions: tuple[str, ...] = ()

    @property
    def advice(self) -> str:
        return f'start it first, as root: eval "$({self.script} start)"'

    def command(self, name: str) -> str:
        return os.path.join(self.bin_dir, name) if self.bin_dir else name


CLUSTERS = {
    "22.05": Cluster(
        "22.05", "deploy/slurm-cluster.sh",
        os.environ.get("ORCH_SLURMRESTD_URL") or "http://127.0.0.1:6820",
        os.environ.get("ORCH_SLURM_TOKEN_FILE") or str(ROOT / "var/slurm/orch-slurm.jwt"),
        "v0.0.38", rest_api_versions=("v0.0.38",)),
    "24.11": Cluster(
        "24.11", "deploy/slurm24-cluster.sh",
        os.environ.get("ORCH_SLURM24_RESTD_URL") or "http://127.0.0.1:6829",
        os.environ.get("ORCH_SLURM24_TOKEN_FILE") or str(ROOT / "var/slurm24/run/orch-slurm.jwt"),
        "v0.0.42",
        os.environ.get("ORCH_SLURM24_BIN_DIR") or str(ROOT / "var/slurm24/bin"),
        ("v0.0.40", "v0.0.41", "v0.0.42")),
}
# The cluster the tests of the running module use: set by the slurm_cluster fixture
# (tests/executors/conftest.py), which runs each module's tests on one cluster, then the other.
_CURRENT = [CLUSTERS["22.05"]]


def current() -> Cluster:
    return _CURRENT[0]


def use(cluster: Cluster) -> None:
    _CURRENT[0] = cluster


START_ADVICE = CLUSTERS["22.05"].advice


def job_uid() -> int:
    """The uid of the user Slurm jobs run as; skips with advice when it does not exist."""
    try:
        return pwd.getpwnam(JOB_USER).pw_uid
    except KeyError:
        pytest.skip(f"there is no user {JOB_USER} for Slurm jobs: {START_ADVICE}")


@contextlib.contextmanager
def reachable_dir(mode: int = 0o755):
    """A fresh directory under the system's temp dir that the jobs' user can search (pytest's
    tmp_path is root's alone), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="orch-test-slurm-"))
    path.chmod(mode)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def slurm(*argv: str) -> subprocess.CompletedProcess:
    """A Slurm command of the test itself (not of the executor under test), on the current
    cluster."""
    argv = (current().command(argv[0]), *argv[1:])
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def require_cluster() -> None:
    """Skip with advice when the cluster does not answer (a failure in CI: tests/conftest.py)."""
    advice = f"Slurm {current().release}: {current().advice}"
    try:
        ping = slurm("scontrol", "ping")
    except FileNotFoundError:
        pytest.skip(f"Slurm is not installed on this machine: {advice}")
    if ping.returncode != 0 or "is UP" not in ping.stdout:
        pytest.skip(f"slurmctld does not answer ({(ping.stdout + ping.stderr).strip()}): "
                    f"{advice}")
    states = slurm("sinfo", "-h", "-o", "%t").stdout.split()
    if not any(s in ("idle", "mix", "alloc", "comp") for s in states):
        pytest.skip(f"no Slurm node is up (sinfo says {states}): {advice}")


def cancel_named(names: set[str]) -> None:
    """Cancel every job still held under one of ``names``: tests leave no job behind."""
    if not names:
        return
    listed = slurm("squeue", "-h", "-o", "%i %j", f"--name={','.join(sorted(names))}").stdout
    ids = [line.split()[0] for line in listed.splitlines() if line.strip()]
    if ids:
        slurm("scancel", *ids)


def saved_by_slurm(job_id: str) -> dict[str, str]:
    """What slurmctld keeps of a live job and shows or stores: ``scontrol show job -dd``, the
    saved batch script, and the job's files in its state directory (``environment``: what
    sbatch or slurmrestd gave it), where this test may read them (as root, here)."""
    saved = {
        "scontrol show job -dd": slurm("scontrol", "show", "job", "-dd", job_id).stdout,
        "scontrol write batch_script": slurm("scontrol", "write", "batch_script", job_id,
                                             "-").stdout,
    }
    config = slurm("scontrol", "show", "config").stdout
    state_dir = next((line.split("=", 1)[1].strip() for line in config.splitlines()
                      if line.startswith("StateSaveLocation")), "")
    job_dir = Path(state_dir) / f"hash.{int(job_id) % 10}" / f"job.{job_id}"
    for path in job_dir.glob("*") if state_dir else ():
        saved[str(path)] = path.read_bytes().decode(errors="replace")
    return saved


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
    """A pipeline file of pipelines/ and its pool's settings, with a test's work root (and
    paths relative to the checkout, where a worker started there would find them)."""
    pipeline = yaml.safe_load((ROOT / "pipelines" / f"{name}.yaml").read_text())
    pool = yaml.safe_load((ROOT / "pipelines" / "pools" / f"{pipeline['pool']}.yaml").read_text())
    settings = dict(pool["settings"])
    if settings.get("token_file"):
        settings["token_file"] = str(ROOT / settings["token_file"])
    return pipeline, {**settings, "work_root": str(work_root)}


def new_spec(kind: str, target: str, pool: str, **fields) -> JobSpec:
    """A fresh JobSpec (new process id) running COMMANDS[kind] unless ``command`` is given."""
    fields.setdefault("command", COMMANDS.get(kind, []))
    fields.setdefault("resources", Resources(cpus=1, memory_mb=128, time_limit_s=600))
    return JobSpec(process_id=str(uuid.uuid4()), pipeline=kind, version=1, target=target,
                   pool=pool, **fields)


def over_its_time_limit(target: str, pool: str) -> JobSpec:
    """A job that sleeps 300 s with a one-minute limit: Slurm ends it TIMEOUT."""
    return new_spec("limit", target, pool, command=["sleep", "300"],
                    resources=Resources(cpus=1, memory_mb=128, time_limit_s=60))


class SlurmContract(ExecutorContract):
    @pytest.fixture
    def unknown_handle(self):
        return f"99999999:orch-{uuid.uuid4()}:{int(time.time()) - 3600}"

    def saved_job(self, executor, job_id: str) -> dict[str, str]:
        """Where Slurm keeps a job's details; a target module adds its own views."""
        return saved_by_slurm(job_id)

    def test_secrets_reach_the_job_through_a_0600_file_slurm_does_not_keep(
        self, executor, make_spec, monkeypatch
    ):
        monkeypatch.setenv("ORCH_SECRETS_KEY", Fernet.generate_key().decode())
        monkeypatch.delenv("ORCH_SECRETS_KEYS", raising=False)
        value = f"slurm-secret-{uuid.uuid4().hex}"
        # Waits for "go" so the test looks while Slurm holds the job; prints a digest only.
        wait_then_digest = ('while [ ! -e go ]; do sleep 0.2; done; '
                            'printf %s "$API_TOKEN" | sha256sum')
        spec = make_spec("secret", command=["sh", "-c", wait_then_digest],
                         env={"PLAIN": "not-secret"})
        spec.secret_env = seal({"API_TOKEN": value}, process_id=spec.process_id, pool=spec.pool)
        sub = executor.submit(spec)
        work_dir = executor.work_dir(spec.process_id)
        secrets_file = work_dir / "secrets.env"
        assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
        # The job's user owns it (the root worker wrote it), and nobody else can enter the dir.
        assert secrets_file.stat().st_uid == job_uid() == work_dir.stat().st_uid
        assert stat.S_IMODE(work_dir.stat().st_mode) == 0o700

        saved = self.saved_job(executor, sub.handle.split(":")[0])
        # The environment Slurm saved is there to read (it holds the plain env), not the value.
        assert any("PLAIN=not-secret" in text for text in saved.values()), list(saved)
        for where, text in saved.items():
            assert value not in text, f"{where} holds the secret"

        (work_dir / "go").touch()
        events = poll_until(executor, item_for(spec, sub.handle), ended)
        assert events[-1].state == State.SUCCEEDED, events[-1].message
        log = full_log(events)
        assert hashlib.sha256(value.encode()).hexdigest() in log
        assert value not in log
        assert not secrets_file.exists()
        for path in work_dir.rglob("*"):
            assert not path.is_file() or value.encode() not in path.read_bytes(), path

    def test_a_job_reads_its_dataset_read_only_and_its_outputs_are_stored(
            self, executor, make_spec, tmp_path, monkeypatch):
        """Staged by the worker on the submission node into the run dir on the shared file
        system; the job runs as the pool's user, who may read the input and nothing more."""
        store, key = put_dataset(tmp_path / "store", monkeypatch)
        spec = data_spec(make_spec, "python3", key)
        run_dir = executor.work_dir(spec.process_id)
        result = check_data_round_trip(executor, spec, store, str(run_dir / "inputs"))
        assert result["mode"] == "0o444"
        assert not (run_dir / "outputs").exists()  # released after

    def test_scancel_stops_the_job(self, executor, make_spec):
        spec = make_spec("sleep")
        sub = executor.submit(spec)
        item = item_for(spec, sub.handle)
        poll_until(executor, item, lambda e: e.state == State.RUNNING)
        executor.cancel(sub.handle)
        events = poll_until(executor, item, ended)
        assert events[-1].state == State.STOPPED
        assert "CANCELLED" in events[-1].message

    def test_the_job_runs_as_the_pools_user_never_root(self, executor, make_spec):
        spec = make_spec("whoami", command=["sh", "-c", 'echo "uid=$(id -u)"'])
        sub = executor.submit(spec)
        events = poll_until(executor, item_for(spec, sub.handle), ended)
        assert events[-1].state == State.SUCCEEDED, events[-1].message
        assert job_uid() != 0
        assert f"uid={job_uid()}" in full_log(events).split(), full_log(events)

    def test_a_job_cannot_make_the_worker_read_a_file_for_it(self, executor, make_spec):
        """The job swaps its log for a link to a file only root can read; the root worker
        ships nothing of that file as the job's log."""
        fd, secret = tempfile.mkstemp(prefix="orch-test-worker-only-")  # mode 0600, root's
        value = f"worker-only-{uuid.uuid4().hex}"
        with os.fdopen(fd, "w") as out:
            out.write(value)
        try:
            swap = f'echo before; rm -f output.log; ln -s {secret} output.log; echo after'
            spec = make_spec("swap", command=["sh", "-c", swap])
            sub = executor.submit(spec)
            events = poll_until(executor, item_for(spec, sub.handle), ended)
            assert events[-1].state == State.SUCCEEDED, events[-1].message
            assert (executor.work_dir(spec.process_id) / "output.log").is_symlink()
            assert value not in full_log(events)
        finally:
            os.unlink(secret)

    def test_config_stays_literal_data(self, executor, make_spec):
        # The marks go where the job's user could create them, were it fooled.
        with reachable_dir(mode=0o1777) as marks_dir:
            config, marks = hostile_config(marks_dir)
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
        assert "pwned1" not in batch
        assert "line two" not in batch

    def test_a_job_that_now_has_our_id_and_another_name_is_not_ours(self, executor, unknown_handle):
        other = f"other-{uuid.uuid4()}"
        job_id = slurm("sbatch", "--parsable", f"--job-name={other}", "--mem=64M",
                       "--output=/dev/null", "--wrap=sleep 60").stdout.strip()
        assert job_id.isdigit()
        try:
            _, name, submitted = unknown_handle.split(":")
            handle = f"{job_id}:{name}:{submitted}"
            spec = JobSpec(name[5:], "p", 1, executor.target, "t")
            (event,) = executor.poll([item_for(spec, handle)])
            assert event.missing
            assert event.state is None
            executor.cancel(handle)
            state = slurm("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip()
            assert state in ("PENDING", "RUNNING")  # the stranger's job was left alone
        finally:
            slurm("scancel", job_id)


class SlurmTimeLimit:
    """A job over its time limit, which Slurm needs about 85 s to end (limits count in minutes,
    checked every 30 s): the module's ``timed_out_job`` fixture submits it as the module
    starts, and this test, last in the module, waits for it."""

    def test_time_limit_fails_the_job_with_the_reason(self, timed_out_job):
        executor, spec, sub = timed_out_job
        events = poll_until(executor, item_for(spec, sub.handle), ended, timeout=180)
        assert events[-1].state == State.FAILED
        assert "time limit" in events[-1].message
        assert "TIMEOUT" in events[-1].message
