"""The docker target passes the shared executor contract, plus what is its own.

Runs against the real container engine at DOCKER_HOST (deploy/container-engine.sh starts
Podman's Docker-compatible service and builds the images used here); skips when none answers
(a failure in CI).
Each test runs in a pool of its own and removes that pool's containers afterwards.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest
from docker.errors import NotFound

import workers.executors.docker.executor as docker_module
from tests.executors.contract import ExecutorContract, ended, full_log, item_for, poll_until
from tests.executors.data_jobs import check_data_round_trip, data_spec, put_dataset
from tests.executors.docker_engine import BUSYBOX, PYTHON, force_remove, usable_engine
from workers.contract import JobSpec, PollItem, Resources, State
from workers.executors.base import ExecutorError
from workers.executors.docker import DockerExecutor
from workers.executors.docker.container_spec import LABEL_POOL, LABEL_PROCESS

COMMANDS = {
    "ok": ["sh", "-c", 'echo "hello from $ORCH_PROCESS_ID"'],
    "fail": ["sh", "-c", "echo failing; exit 3"],
    "sleep": ["sleep", "60"],
}


@pytest.fixture(scope="session")
def engine():
    """A client of the engine the executor will use, or a skipped test saying how to start it."""
    client = usable_engine(lambda: docker.from_env(timeout=10))
    yield client
    client.close()


@pytest.fixture
def pool(engine):
    name = f"test-docker-{uuid.uuid4().hex[:8]}"
    yield name
    for found in engine.api.containers(all=True, filters={"label": [f"{LABEL_POOL}={name}"]}):
        force_remove(engine.api, found["Id"])


@pytest.fixture
def executor(pool, tmp_path):
    return DockerExecutor(pool, {"work_root": str(tmp_path), "network": "none"})


@pytest.fixture
def make_spec(pool):
    def make(kind, **fields):
        fields.setdefault("command", COMMANDS.get(kind, []))
        fields.setdefault("image", BUSYBOX)
        return JobSpec(
            process_id=str(uuid.uuid4()), pipeline=kind, version=1, target="docker",
            pool=pool, **fields,
        )

    return make


@pytest.fixture
def unknown_handle():
    return uuid.uuid4().hex * 2  # shaped like a container id


class TestDockerContract(ExecutorContract):
    pass


def inspect(engine, handle):
    return engine.api.inspect_container(handle)


def run_to_end(executor, spec, **poll_fields):
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle, **poll_fields)
    return sub, item, poll_until(executor, item, ended)


def test_container_carries_the_process_and_pool_labels(executor, make_spec, engine):
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    labels = inspect(engine, sub.handle)["Config"]["Labels"]
    assert labels[LABEL_PROCESS] == spec.process_id
    assert labels[LABEL_POOL] == executor.pool
    executor.cancel(sub.handle)


def test_config_is_a_read_only_file_named_by_the_environment(executor, make_spec, tmp_path):
    hostile = "$(touch /orch/work/pwned); `touch /orch/work/pwned`; rm -rf /"
    script = (
        'cat "$ORCH_CONFIG_FILE"; echo; '
        'if echo tampered > "$ORCH_CONFIG_FILE"; then echo WRITABLE; else echo READ-ONLY; fi'
    )
    spec = make_spec("config", command=["sh", "-c", script], config={"name": hostile, "n": 3})
    _sub, _item, events = run_to_end(executor, spec)
    assert events[-1].state == State.SUCCEEDED
    output = full_log(events)
    assert json.loads(output.splitlines()[0]) == spec.config
    assert "READ-ONLY" in output
    assert "WRITABLE" not in output
    assert not any(tmp_path.rglob("pwned"))


def test_python_job_reads_its_config_and_writes_to_its_work_dir(executor, make_spec, tmp_path):
    code = (
        "import json, os\n"
        "config = json.load(open(os.environ['ORCH_CONFIG_FILE']))\n"
        "words = config['text'].split()\n"
        "out = os.path.join(os.environ['ORCH_WORK_DIR'], 'count.json')\n"
        "json.dump({'words': len(words)}, open(out, 'w'))\n"
        "print('words:', len(words))\n"
    )
    spec = make_spec("py", image=PYTHON, command=["python3", "-c", code],
                     config={"text": "to be or not to be"})
    _sub, _item, events = run_to_end(executor, spec)
    assert events[-1].state == State.SUCCEEDED, full_log(events)
    assert "words: 6" in full_log(events)
    written = tmp_path / spec.process_id / "work" / "count.json"
    assert json.loads(written.read_text()) == {"words": 6}


def test_a_script_runs_with_sh(executor, make_spec):
    spec = make_spec("script", command=[], script='echo "from a script: $ORCH_PROCESS_ID"\n')
    _sub, _item, events = run_to_end(executor, spec)
    assert events[-1].state == State.SUCCEEDED
    assert f"from a script: {spec.process_id}" in full_log(events)


def test_resources_reach_the_container(executor, make_spec, engine):
    spec = make_spec("sleep", resources=Resources(cpus=0.5, memory_mb=64, time_limit_s=600))
    sub = executor.submit(spec)
    host_config = inspect(engine, sub.handle)["HostConfig"]
    assert host_config["Memory"] == 64 * 1024 * 1024
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["Init"] is True
    executor.cancel(sub.handle)


def test_a_missing_image_is_a_permanent_error_naming_it(executor, make_spec, engine):
    spec = make_spec("ok", image="orchestration/no-such-image:1.0")
    with pytest.raises(ExecutorError) as raised:
        executor.submit(spec)
    assert raised.value.permanent
    assert "orchestration/no-such-image:1.0" in str(raised.value)
    assert not engine.api.containers(
        all=True, filters={"label": [f"{LABEL_PROCESS}={spec.process_id}"]})


def test_a_command_that_does_not_exist_fails_with_a_message_naming_it(executor, make_spec):
    spec = make_spec("bad", command=["/nonexistent/tool", "--flag"])
    _sub, _item, events = run_to_end(executor, spec)
    assert events[-1].state == State.FAILED
    assert "could not be started" in events[-1].message
    assert "/nonexistent/tool" in events[-1].message


def test_out_of_memory_is_reported_as_killed(executor, make_spec):
    grow = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"
    spec = make_spec("oom", command=["sh", "-c", grow],
                     resources=Resources(memory_mb=16, time_limit_s=600))
    _sub, _item, events = run_to_end(executor, spec)
    assert events[-1].state == State.FAILED
    assert events[-1].exit_code == 137
    assert "killed" in events[-1].message
    assert "out of memory" in events[-1].message
    assert "16 MB" in events[-1].message
    assert "survived" not in full_log(events)


def test_time_limit_is_enforced_by_the_poller(executor, make_spec, engine):
    spec = make_spec("sleep", resources=Resources(time_limit_s=1))
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    events = poll_until(executor, item, ended, timeout=30)
    assert events[-1].state == State.FAILED
    assert "time limit of 1 s exceeded" in events[-1].message
    assert inspect(engine, sub.handle)["State"]["Running"] is False


def test_stop_ends_the_command_by_sigterm_through_the_init(executor, make_spec):
    """With an init in the container, SIGTERM reaches the command and it ends at once
    (exit 143), instead of the init ignoring it until SIGKILL after the grace (exit 137)."""
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle, stop_requested=True)
    poll_until(executor, item, lambda e: e.state == State.RUNNING)
    events = poll_until(executor, item, ended)
    assert events[-1].state == State.STOPPED
    assert events[-1].exit_code == 143


def test_stop_of_a_command_ignoring_sigterm_ends_with_sigkill(pool, tmp_path, make_spec):
    executor = DockerExecutor(pool, {"work_root": str(tmp_path), "stop_grace_s": 1})
    spec = make_spec("stubborn", command=[
        "sh", "-c", "trap '' TERM; echo deaf to TERM; while :; do sleep 1; done"])
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    # Stop only once the trap is set: a TERM that beats it (a loaded host) ends the job as 143.
    poll_until(executor, item, lambda event: "deaf to TERM" in event.log, timeout=60)
    item.stop_requested = True
    events = poll_until(executor, item, ended, timeout=30)
    assert events[-1].state == State.STOPPED
    assert events[-1].exit_code == 137


def test_container_is_kept_until_released_after_its_logs(executor, make_spec, engine):
    spec = make_spec("ok")
    sub, item, events = run_to_end(executor, spec)
    assert f"hello from {spec.process_id}" in full_log(events)
    # Ended, but kept: the logs can still be read from the start.
    assert inspect(engine, sub.handle)["State"]["Running"] is False
    item.log_offset = 0
    (again,) = executor.poll([item])
    assert f"hello from {spec.process_id}" in again.log
    executor.release(sub.handle)
    with pytest.raises(NotFound):
        inspect(engine, sub.handle)
    # Released, and still known: a late duplicate of the job spec starts nothing.
    assert executor.submit(spec).handle == sub.handle
    assert not engine.api.containers(
        all=True, filters={"label": [f"{LABEL_PROCESS}={spec.process_id}"]})


def test_release_leaves_a_running_container_alone(executor, make_spec, engine):
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    executor.release(sub.handle)
    assert inspect(engine, sub.handle)["State"]["Running"] is True
    executor.cancel(sub.handle)


def test_one_list_call_answers_for_many_containers(executor, make_spec):
    specs = [make_spec("sleep") for _ in range(6)]
    items = [item_for(s, executor.submit(s).handle) for s in specs]
    calls = []
    executor.client.api.hooks["response"].append(
        lambda response, *args, **kwargs: calls.append(response.request.path_url))
    statuses = executor.statuses(items)
    assert len(calls) == 1, calls
    assert calls[0].split("?")[0].endswith("/containers/json")
    assert [statuses[i.handle].state for i in items] == [State.RUNNING] * len(items)
    calls.clear()  # a whole poll adds one log read per container, nothing more
    assert [e.state for e in executor.poll(items)] == [State.RUNNING] * len(items)
    paths = sorted(call.split("?")[0].rsplit("/", 1)[-1] for call in calls)
    assert paths == ["json"] + ["logs"] * len(items), calls
    for item in items:
        executor.cancel(item.handle)


def test_a_restarted_worker_finds_and_polls_the_container(executor, make_spec):
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    restarted = DockerExecutor(executor.pool, executor.settings)
    assert restarted.find(spec).handle == sub.handle
    (event,) = restarted.poll([item_for(spec, sub.handle)])
    assert event.state == State.RUNNING
    restarted.cancel(sub.handle)


def test_a_container_created_by_a_submit_that_died_is_started(executor, make_spec, monkeypatch):
    """A worker killed between creating and starting the container: the container stays
    "created"; once it is older than the start grace, the next delivery starts it."""
    spec = make_spec("ok")
    run_dir = executor._prepare_run_dir(spec)
    handle = executor._create(spec, run_dir)  # the submit that died got this far
    monkeypatch.setattr(docker_module, "CREATED_GRACE_S", 0)
    assert executor.submit(spec).handle == handle
    events = poll_until(executor, item_for(spec, handle), ended)
    assert events[-1].state == State.SUCCEEDED
    assert f"hello from {spec.process_id}" in full_log(events)


def test_poll_fails_loudly_when_the_engine_does_not_answer(tmp_path):
    executor = DockerExecutor("nowhere", {"docker_host": "unix:///nonexistent/engine.sock",
                                          "api_version": "1.41", "work_root": str(tmp_path)})
    item = PollItem(process_id="p", handle="h", submitted_at=time.time())
    with pytest.raises(ExecutorError) as raised:
        executor.poll([item])
    assert not raised.value.permanent
    assert "/nonexistent/engine.sock" in str(raised.value)


def test_reaper_removes_only_old_containers_of_unpolled_processes(executor, make_spec, engine):
    kept, orphan = make_spec("sleep"), make_spec("sleep")
    kept_handle = executor.submit(kept).handle
    orphan_handle = executor.submit(orphan).handle
    assert executor.reap_orphans([kept.process_id], grace_s=3600) == []  # too young
    assert executor.reap_orphans([kept.process_id], grace_s=0) == [orphan.process_id]
    with pytest.raises(NotFound):
        inspect(engine, orphan_handle)
    assert inspect(engine, kept_handle)["State"]["Running"] is True
    (event,) = executor.poll([item_for(orphan, orphan_handle)])
    assert event.missing  # the control plane is told plainly, should it ask again
    executor.cancel(kept_handle)


def test_stop_of_a_container_that_never_started_gives_stopped(executor, make_spec, engine,
                                                               monkeypatch):
    spec = make_spec("ok")
    handle = executor._create(spec, executor._prepare_run_dir(spec))  # its submit died here
    executor.cancel(handle)
    monkeypatch.setattr(docker_module, "CREATED_GRACE_S", 0)  # old enough to be started
    events = poll_until(executor, item_for(spec, handle), ended)
    assert events[-1].state == State.STOPPED
    assert executor.submit(spec).handle == handle
    assert inspect(engine, handle)["State"]["Status"] == "created"  # never started


def test_two_deliveries_at_once_give_one_container(executor, make_spec, engine):
    spec = make_spec("sleep")
    with ThreadPoolExecutor(2) as pool:
        subs = list(pool.map(lambda _: DockerExecutor(executor.pool, executor.settings)
                             .submit(spec), range(2)))
    assert subs[0].handle == subs[1].handle
    found = engine.api.containers(
        all=True, filters={"label": [f"{LABEL_PROCESS}={spec.process_id}"]})
    assert [c["Id"] for c in found] == [subs[0].handle]
    (event,) = executor.poll([item_for(spec, subs[0].handle)])
    assert event.state == State.RUNNING
    executor.cancel(subs[0].handle)


# --- containers that cannot reach the host ------------------------------------------------------

JAILED = """
id -u; id -g
grep -E '^(NoNewPrivs|CapEff|CapBnd):' /proc/self/status
touch /etc/x 2>/dev/null && echo ROOT-FS-WRITABLE || echo ROOT-FS-READ-ONLY
touch /tmp/x && echo TMP-WRITABLE
echo out > /orch/work/out && echo WORK-WRITABLE
grep ' /orch/work ' /proc/self/mountinfo
"""


def log_lines(events) -> list[str]:
    return [line.strip() for line in full_log(events).splitlines()]


def test_a_container_is_not_root_and_cannot_gain_privileges(executor, make_spec, tmp_path):
    spec = make_spec("jailed", command=["sh", "-c", JAILED])
    _sub, _item, events = run_to_end(executor, spec)
    assert events[-1].state == State.SUCCEEDED, full_log(events)
    lines = log_lines(events)
    assert lines[:2] == ["65534", "65534"]
    assert "NoNewPrivs:\t1" in full_log(events)
    assert "CapEff:\t0000000000000000" in full_log(events)
    assert "CapBnd:\t0000000000000000" in full_log(events)
    assert "ROOT-FS-READ-ONLY" in lines
    assert "ROOT-FS-WRITABLE" not in lines
    assert "TMP-WRITABLE" in lines
    assert "WORK-WRITABLE" in lines
    (mount,) = [line for line in lines if " /orch/work " in line]
    assert "nosuid" in mount.split()[5]
    assert "nodev" in mount.split()[5]  # Podman's binds
    # On the host: the work dir is the job user's alone, the run dir the worker's.
    run_dir = tmp_path / spec.process_id
    work = run_dir / "work"
    assert (work.stat().st_uid, work.stat().st_gid) == (65534, 65534)
    assert work.stat().st_mode & 0o777 == 0o700
    assert run_dir.stat().st_uid == 0
    assert run_dir.stat().st_mode & 0o777 == 0o700
    assert (work / "out").stat().st_uid == 65534


def test_a_setuid_file_made_by_the_job_gives_no_root(executor, make_spec, tmp_path):
    script = (
        "cp /bin/busybox /orch/work/id && chmod 4755 /orch/work/id && echo MADE\n"
        "chown 0:0 /orch/work/id 2>/dev/null && echo CHOWNED-TO-ROOT\n"
        "/orch/work/id -u\n"
    )
    spec = make_spec("suid", command=["sh", "-c", script])
    _sub, _item, events = run_to_end(executor, spec)
    lines = log_lines(events)
    assert "MADE" in lines
    assert "CHOWNED-TO-ROOT" not in lines
    assert lines[-1] == "65534"  # running it gives no one else's uid in the container
    made = (tmp_path / spec.process_id / "work" / "id").stat()
    assert made.st_uid == 65534
    assert made.st_gid == 65534  # its setuid bit means nobody


def test_the_pool_chooses_the_user(pool, tmp_path, make_spec):
    executor = DockerExecutor(pool, {"work_root": str(tmp_path), "user": "4321:4322"})
    spec = make_spec("who", command=["sh", "-c", "id -u; id -g; touch /orch/work/mine"])
    _sub, _item, events = run_to_end(executor, spec)
    assert events[-1].state == State.SUCCEEDED, full_log(events)
    assert log_lines(events)[:2] == ["4321", "4322"]
    assert (tmp_path / spec.process_id / "work" / "mine").stat().st_uid == 4321


@pytest.mark.parametrize("settings, user, reason", [
    ({}, "root", "asks to run as root"),
    ({"user": "0:0"}, "", "allow_root is false"),
    ({"user": "nobody"}, "", "numeric uid:gid"),
    ({"allow_root": True}, "1000", "may only be 'root'"),
])
def test_root_and_odd_users_are_refused_before_anything_runs(pool, tmp_path, make_spec, engine,
                                                             settings, user, reason):
    executor = DockerExecutor(pool, {"work_root": str(tmp_path), **settings})
    spec = make_spec("ok")
    spec.user = user  # the pipeline's run.user
    with pytest.raises(ExecutorError) as raised:
        executor.submit(spec)
    assert raised.value.permanent  # the worker reports the process FAILED with this message
    assert reason in str(raised.value)
    assert not engine.api.containers(
        all=True, filters={"label": [f"{LABEL_PROCESS}={spec.process_id}"]})
    assert not (tmp_path / spec.process_id).exists()


def test_root_where_the_pool_allows_it_still_has_no_privileges(pool, tmp_path, make_spec):
    executor = DockerExecutor(pool, {"work_root": str(tmp_path), "allow_root": True})
    spec = make_spec("root", command=["sh", "-c", JAILED])
    spec.user = "root"
    _sub, _item, events = run_to_end(executor, spec)
    assert events[-1].state == State.SUCCEEDED, full_log(events)
    lines = log_lines(events)
    assert lines[:2] == ["0", "0"]
    assert "CapEff:\t0000000000000000" in full_log(events)
    assert "ROOT-FS-READ-ONLY" in lines
    assert "WORK-WRITABLE" in lines


def test_a_python_job_over_its_memory_limit_is_killed_and_reported(executor, make_spec):
    grow = "x = bytearray(200 * 1024 * 1024); x[::4096] = b'a' * len(x[::4096]); print('survived')"
    spec = make_spec("oom", image=PYTHON, command=["python3", "-c", grow],
                     resources=Resources(memory_mb=64, time_limit_s=600))
    _sub, _item, events = run_to_end(executor, spec)
    assert events[-1].state == State.FAILED, full_log(events)
    assert events[-1].exit_code == 137
    assert "out of memory (limit 64 MB)" in events[-1].message
    assert "survived" not in full_log(events)


def test_a_listing_podman_trips_over_an_exiting_container_is_asked_again(
        executor, make_spec, monkeypatch):
    """Podman answers a listing with 500 "read /proc/<pid>/cgroup: no such process" when a
    container exits meanwhile (seen in CI): the submission asks again instead of failing."""
    real = executor.client.api.containers
    tripped = []

    def trips_once(*args, **kwargs):
        if not tripped:
            tripped.append(True)
            response = type("Response", (), {"status_code": 500, "reason": "error"})()
            raise docker.errors.APIError("500", response=response,
                                         explanation="read /proc/4901/cgroup: no such process")
        return real(*args, **kwargs)

    monkeypatch.setattr(executor.client.api, "containers", trips_once)
    spec = make_spec("ok")
    events = poll_until(executor, item_for(spec, executor.submit(spec).handle), ended)
    assert tripped
    assert events[-1].state == State.SUCCEEDED


# --- GPUs ---------------------------------------------------------------------------------------

GPU_ENV = 'echo "NVIDIA=$NVIDIA_VISIBLE_DEVICES"; echo "HELD=$ORCH_GPU_DEVICES"'


def test_a_job_gets_exactly_the_gpu_devices_admission_gave_it(executor, make_spec, engine,
                                                               monkeypatch):
    """Podman takes no GPU device request (its engine drops it): what the container is asked
    for is read from the create call, what it is given from the engine and the job itself.
    The job's own env cannot widen its devices."""
    asked = []
    create = executor.engine.create
    monkeypatch.setattr(executor.engine, "create",
                        lambda request: asked.append(request) or create(request))
    spec = make_spec("gpu", command=["sh", "-c", GPU_ENV], gpu_devices=["1"],
                     resources=Resources(gpus=1), env={"NVIDIA_VISIBLE_DEVICES": "all"})
    sub, _item, events = run_to_end(executor, spec)
    assert events[-1].state == State.SUCCEEDED, full_log(events)
    assert log_lines(events) == ["NVIDIA=1", "HELD=1"]
    [request] = asked
    assert request["host_config"]["DeviceRequests"] == [
        {"Driver": "", "Count": 0, "DeviceIDs": ["1"], "Capabilities": [["gpu"]],
         "Options": {}}]
    given = inspect(engine, sub.handle)["Config"]["Env"]
    assert "NVIDIA_VISIBLE_DEVICES=1" in given
    assert "ORCH_GPU_DEVICES=1" in given


def test_a_job_that_asks_no_gpu_is_given_none(executor, make_spec):
    """On a host whose default runtime is nvidia, a CUDA image says NVIDIA_VISIBLE_DEVICES=all:
    a job that asks no GPU must not see another job's devices."""
    spec = make_spec("cpu", command=["sh", "-c", GPU_ENV], env={"NVIDIA_VISIBLE_DEVICES": "all"})
    _sub, _item, events = run_to_end(executor, spec)
    assert events[-1].state == State.SUCCEEDED, full_log(events)
    assert log_lines(events) == ["NVIDIA=void", "HELD="]


def test_a_job_reads_its_dataset_read_only_and_its_outputs_are_stored(
        executor, make_spec, tmp_path, monkeypatch):
    store, key = put_dataset(tmp_path / "store", monkeypatch)
    spec = data_spec(make_spec, "python3", key, image=PYTHON)
    result = check_data_round_trip(executor, spec, store, "/orch/inputs")
    assert result["mode"] == "0o444"
    assert not (tmp_path / spec.process_id / "outputs").exists()  # released after


def count_engine_calls(executor):
    """A Counter of the engine API calls the executor makes from now on, by kind."""
    from collections import Counter

    calls: Counter[str] = Counter()

    def hook(response, *args, **kwargs):
        path = response.request.path_url.split("?")[0]
        calls["logs" if path.endswith("/logs") else "list" if path.endswith("/json")
              else path.rsplit("/", 1)[-1]] += 1

    executor.client.api.hooks["response"].append(hook)
    return calls


def shipped(items, events):
    """The poll items of the next round, as the control plane makes them from ``events``."""
    for item, event in zip(items, events, strict=True):
        if event.log_end is not None:
            item.log_offset = event.log_end
        if event.log_cursor:
            item.log_cursor = event.log_cursor
    return items


# Prints a line, then another once the file ``go`` appears in its work dir, then idles.
WAITS_FOR_GO = ["sh", "-c", "echo started; while [ ! -e go ]; do sleep 0.2; done; "
                            "echo went; sleep 600"]


def printed(executor, specs, timeout=30.0):
    """Wait until every container of ``specs`` has written to its log file."""
    from workers.executors.docker import log_reads

    deadline = time.monotonic() + timeout
    while not all(log_reads.log_size(executor.run_dir(s.process_id)) for s in specs):
        assert time.monotonic() < deadline, "the containers printed nothing"
        time.sleep(0.1)


def test_submit_reports_running_at_the_containers_own_start(executor, make_spec, engine):
    before = time.time()
    sub = executor.submit(make_spec("sleep"))
    assert sub.state == State.RUNNING
    started = inspect(engine, sub.handle)["State"]["StartedAt"]
    assert before <= sub.started_at <= time.time()
    assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sub.started_at)) == started[:19]


def test_a_poll_reads_only_the_logs_that_grew(executor, make_spec):
    specs = [make_spec("waits", command=WAITS_FOR_GO) for _ in range(50)]
    with ThreadPoolExecutor(8) as threads:
        handles = list(threads.map(lambda s: executor.submit(s).handle, specs))
    items = [item_for(s, h) for s, h in zip(specs, handles, strict=True)]
    printed(executor, specs)
    events = executor.poll(items)
    assert all(e.log == "started\n" for e in events), [e.log for e in events]
    items = shipped(items, events)

    calls = count_engine_calls(executor)
    events = executor.poll(items)
    assert calls["logs"] == 0  # nothing grew: one list call, no log read
    assert calls["list"] == 1
    assert all(e.state == State.RUNNING and not e.log for e in events)

    grown = {0, 17, 42}
    for n in grown:
        (executor.run_dir(specs[n].process_id) / "work" / "go").touch()
    # The three may print in different polls: what each poll read is gathered.
    read: dict[int, str] = {}
    deadline = time.monotonic() + 20
    while True:
        calls.clear()
        events = executor.poll(items)
        items = shipped(items, events)
        assert calls["logs"] <= len(grown)
        for n, event in enumerate(events):
            if event.log:
                read[n] = read.get(n, "") + event.log
        if all("went" in read.get(n, "") for n in grown) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert set(read) == grown


def test_logs_out_of_reach_are_read_in_turns_of_the_pools_budget(pool, tmp_path, make_spec):
    """Without the log files (an engine on another host), ``log_reads_per_poll`` running
    containers are read per poll, in turns that reach every one."""
    executor = DockerExecutor(pool, {"work_root": str(tmp_path), "network": "none",
                                     "log_reads_per_poll": 4})
    specs = [make_spec("waits", command=WAITS_FOR_GO) for _ in range(10)]
    handles = [executor.submit(s).handle for s in specs]
    printed(executor, specs)
    for spec in specs:
        (executor.run_dir(spec.process_id) / "log_path").unlink()
    items = [item_for(s, h) for s, h in zip(specs, handles, strict=True)]
    calls = count_engine_calls(executor)
    read: set[int] = set()
    for _ in range(3):
        calls.clear()
        events = executor.poll(items)
        assert calls["logs"] <= 4
        read |= {n for n, e in enumerate(events) if e.log}
        items = shipped(items, events)
    assert read == set(range(10))
