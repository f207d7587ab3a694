"""A local job cannot reach the worker: it runs as a user of its own, in a work dir only it
may read, within the memory and cpus its pipeline declares.

The attack replayed: a local pipeline run by one client read ``/proc/<worker>/environ``, the
project's key files and another client's work dir. Real jobs on this host; the worker is this
test process (it must be root to give jobs users of their own).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import time
import uuid
from pathlib import Path

import pytest

from tests.executors.contract import ended, full_log, item_for, poll_until
from tests.work_roots import reachable_work_root
from workers.contract import JobSpec, Resources, State
from workers.environment import project_root
from workers.executors import local_users
from workers.executors.base import ExecutorError
from workers.executors.local import LocalExecutor

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker switches users")

PYTHON = "python3"  # one any user may run
VAR = project_root() / "var"

# Tries each path of its config and prints what it got: READ/LISTED, or DENIED and the errno.
PROBE = r"""
import json, os
targets = json.load(open(os.environ["ORCH_CONFIG_FILE"]))
print("id", os.getuid(), os.getgid(), os.getgroups(), os.environ["HOME"])
for name, path in targets["read"].items():
    try:
        with open(path, "rb") as f:
            print(name, "READ", f.read()[:60])
    except OSError as exc:
        print(name, "DENIED", exc.errno)
for name, path in targets["list"].items():
    try:
        print(name, "LISTED", os.listdir(path))
    except OSError as exc:
        print(name, "DENIED", exc.errno)
"""


@pytest.fixture
def work_root():
    path = reachable_work_root()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def executor(work_root):
    executor = LocalExecutor("local", {"work_root": str(work_root)})
    yield executor
    runs = [run_dir.name for run_dir in work_root.iterdir()]
    for handle in runs:  # stop whatever still runs, then give the uids back
        executor.cancel(handle)
    deadline = time.monotonic() + 20
    for handle in runs:
        while (work_root / handle / "pid").exists() and time.monotonic() < deadline \
                and not (work_root / handle / "exit_code").exists():
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            executor.release(handle)


def spec_for(command: list[str], **fields) -> JobSpec:
    return JobSpec(process_id=str(uuid.uuid4()), pipeline="probe", version=1, target="local",
                   pool="local", command=command, **fields)


def run_to_end(executor: LocalExecutor, spec: JobSpec, timeout: float = 60):
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended, timeout=timeout)
    return events[-1], full_log(events)


def verdicts(log: str) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in log.splitlines() if " " in line}


def limits_of(work_root: Path, spec: JobSpec) -> dict:
    return json.loads((work_root / spec.process_id / "limits").read_text())


def key_file(name: str, new_key: str) -> Path:
    """``var/<name>`` as the product makes it on first use (mode 0600), unless it exists."""
    path = VAR / name
    path.parent.mkdir(exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_key + "\n")
    return path


@pytest.fixture
def careless_file():
    """A file under var/ written with the default mode (0644), as a shell redirect makes one."""
    path = VAR / f"probe-{uuid.uuid4().hex}"
    path.write_text("an admin password")
    path.chmod(0o644)
    yield path
    path.unlink(missing_ok=True)


def test_a_job_cannot_read_the_workers_environ_keys_var_or_a_sibling(
    executor, work_root, careless_file, monkeypatch
):
    marker = f"worker-only-{secrets.token_hex(8)}"
    monkeypatch.setenv("ORCH_PROBE_MARKER", marker)  # in the worker's environ, not the job's
    sibling = spec_for([PYTHON, "-c",
                        "import os, time; open('secret.txt', 'w').write('sibling data');"
                        "print('ready', flush=True); time.sleep(60)"])
    executor.submit(sibling)
    sibling_dir = work_root / sibling.process_id
    deadline = time.monotonic() + 30
    while not (sibling_dir / "work" / "secret.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (sibling_dir / "work" / "secret.txt").read_text() == "sibling data"

    from cryptography.fernet import Fernet

    targets = {
        "read": {
            "worker_environ": f"/proc/{os.getpid()}/environ",
            "secrets_key": str(key_file("secrets.key", Fernet.generate_key().decode())),
            "signing_key": str(key_file("signing.key", secrets.token_urlsafe(32))),
            "careless_file": str(careless_file),
            "sibling_file": str(sibling_dir / "work" / "secret.txt"),
            "sibling_config": str(sibling_dir / "work" / "config.json"),
            "sibling_log": str(sibling_dir / "output.log"),
        },
        "list": {"var": str(VAR), "work_root": str(work_root),
                 "sibling_dir": str(sibling_dir / "work")},
    }
    probe = spec_for([PYTHON, "-c", PROBE], config=targets)
    end, log = run_to_end(executor, probe)

    assert end.state == State.SUCCEEDED, log
    found = verdicts(log)
    assert {name: found.get(name) for group in targets.values() for name in group} == {
        name: "DENIED" for group in targets.values() for name in group}, log
    assert marker not in log
    uid, gid, groups, home = log.splitlines()[0].split(" ", 4)[1:]
    sibling_uid = (sibling_dir / "work").stat().st_uid
    assert int(uid) not in (0, os.geteuid(), sibling_uid)
    assert int(gid) != 0
    assert groups == "[]"
    assert home == str(work_root / probe.process_id / "work")
    job_dir = (work_root / probe.process_id / "work").stat()
    assert (job_dir.st_uid, job_dir.st_mode & 0o777) == (int(uid), 0o700)


def test_a_job_over_its_memory_limit_is_killed_and_reported(executor, work_root):
    hog = spec_for([PYTHON, "-c", "x = b'x' * (256 << 20); print('still here')"],
                   resources=Resources(memory_mb=64))
    modest = spec_for([PYTHON, "-c", "x = b'x' * (8 << 20); print('fits')"],
                      resources=Resources(memory_mb=64))

    end, log = run_to_end(executor, hog)
    mechanism = limits_of(work_root, hog)["mechanism"]
    print(f"memory limit enforced with {mechanism}")
    assert end.state == State.FAILED
    assert "still here" not in log
    if mechanism.startswith("cgroup"):
        assert end.message == "exceeded its memory limit of 64 MB and was killed"
        assert end.exit_code == 137
    else:
        assert "64 MB" in end.message, end.message

    end, log = run_to_end(executor, modest)
    assert (end.state, log.strip()) == (State.SUCCEEDED, "fits")


def test_a_job_gets_no_more_cpu_than_its_pipeline_declares(executor, work_root):
    busy = ("import os, time\n"
            "end = time.monotonic() + 3\n"
            "while time.monotonic() < end: pass\n"
            "t = os.times(); print(t.user + t.system)\n")
    spec = spec_for([PYTHON, "-c", busy], resources=Resources(cpus=0.2))
    end, log = run_to_end(executor, spec)
    mechanism = limits_of(work_root, spec)["mechanism"]
    if not mechanism.startswith("cgroup"):
        pytest.skip(f"{mechanism} cannot cap a rate of cpu")
    assert end.state == State.SUCCEEDED
    # 0.2 cpus for 3 s is 0.6 cpu seconds; unthrottled, a busy loop gets several times that.
    assert float(log.strip()) < 0.3 * 3, log


def test_what_a_job_leaves_running_ends_with_it_and_release_gives_everything_back(
    executor, work_root
):
    spec = spec_for(["/bin/sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!"])
    end, log = run_to_end(executor, spec)
    assert end.state == State.SUCCEEDED
    left = int(log.split()[0])
    deadline = time.monotonic() + 10
    while _alive(left) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(left), "the job's background process outlived it"

    run_dir = work_root / spec.process_id
    uid = (run_dir / "work").stat().st_uid
    cgroups = limits_of(work_root, spec).get("cgroups", [])
    executor.release(spec.process_id)
    assert not (run_dir / "work").exists()
    assert not (local_users.LEASES / str(uid)).exists()
    assert not any(Path(c).exists() for c in cgroups)
    assert executor.submit(spec).handle == spec.process_id  # still found: starts nothing


@pytest.mark.parametrize("settings, fields, named", [
    ({"job_user": "worker"}, {}, "settings.job_user"),
    ({"job_user": "root"}, {}, "settings.job_user"),
    ({"job_user": "0:0"}, {}, "settings.job_user"),
    ({"job_user": "no-such-user-here"}, {}, "settings.job_user"),
    ({}, {"user": "root"}, "run.user"),
])
def test_root_or_an_unknown_user_is_refused_by_name(work_root, settings, fields, named):
    executor = LocalExecutor("local", {"work_root": str(work_root), **settings})
    with pytest.raises(ExecutorError) as refused:
        executor.submit(spec_for([PYTHON, "-c", "print('ran')"], **fields))
    assert refused.value.permanent
    assert str(refused.value).startswith(named)
    assert not list(work_root.glob("*/work"))


def test_a_work_root_its_jobs_cannot_reach_is_refused_naming_the_directory(tmp_path):
    """pytest's tmp dirs are private (0700): a job's user could not get to its work dir."""
    executor = LocalExecutor("local", {"work_root": str(tmp_path / "work")})
    spec = spec_for([PYTHON, "-c", "print('ran')"])
    with pytest.raises(ExecutorError) as refused:
        executor.submit(spec)
    message = str(refused.value)
    assert refused.value.permanent
    assert message.startswith("settings.work_root")
    blocked = next(p for p in tmp_path.parents if not p.stat().st_mode & 0o001)
    assert str(blocked) in message
    assert not (tmp_path / "work" / spec.process_id / "work").exists()


def test_two_jobs_never_share_a_dynamic_uid(executor, work_root):
    specs = [spec_for([PYTHON, "-c", "import time; time.sleep(30)"]) for _ in range(4)]
    for spec in specs:
        executor.submit(spec)
    uids = {(work_root / s.process_id / "work").stat().st_uid for s in specs}
    assert len(uids) == len(specs)
    low, high = (int(x) for x in local_users.DEFAULT_JOB_UIDS.split("-"))
    assert all(low <= uid <= high for uid in uids)


def test_a_worker_that_is_not_root_runs_jobs_as_itself_and_says_so_once(work_root):
    """A worker run as ``nobody``, from a venv of the system's Python that sees this one's
    packages (the test's own interpreter may sit in a directory nobody cannot enter)."""
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    version = subprocess.run([system_python or "false", "-c",
                              "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    if version != str(sys.version_info[:2]):
        pytest.skip("no system Python of the test's version to run a worker as another user")
    venv = work_root / "venv"
    subprocess.run([system_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "orchestration.pth").write_text(
        f"{project_root()}\n{sysconfig.get_paths()['purelib']}\n")
    jobs = work_root / "jobs"
    jobs.mkdir()
    os.chown(jobs, 65534, 65534)
    script = (
        "import logging, uuid\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from tests.executors.contract import ended, full_log, item_for, poll_until\n"
        "from workers.contract import JobSpec\n"
        "from workers.executors.local import LocalExecutor\n"
        f"executor = LocalExecutor('local', {{'work_root': {str(jobs)!r}}})\n"
        "for _ in range(2):\n"
        "    spec = JobSpec(process_id=str(uuid.uuid4()), pipeline='p', version=1,\n"
        "                   target='local', pool='local', command=['id', '-u'])\n"
        "    sub = executor.submit(spec)\n"
        "    events = poll_until(executor, item_for(spec, sub.handle), ended)\n"
        "    print('job uid', full_log(events).strip(), events[-1].state)\n"
    )
    done = subprocess.run(
        [venv / "bin" / "python", "-c", script], user=65534, group=65534, extra_groups=[],
        cwd=project_root(), capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(jobs)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("job uid 65534 SUCCEEDED") == 2, done.stdout
    assert done.stderr.count("local jobs run as this worker's own user (uid 65534)") == 1, \
        done.stderr


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"
