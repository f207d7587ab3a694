"""The ECS target passes the shared executor contract, plus what is its own.

Tested against moto's ECS and CloudWatch Logs in server mode, in this process, with a thin
layer that plays ECS where moto does not (see ``ecs_emulator``): the executor talks HTTP to it
through boto3 exactly as it talks to AWS. Each test says what ECS would do; the emulator does it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import stat
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from testbed.ecs_emulator import (
    ACCOUNT_ID,
    BUSYBOX,
    CAPACITY_UNAVAILABLE,
    Container,
    serving,
)
from tests.executors.contract import ExecutorContract, ended, full_log, item_for, poll_until
from workers.contract import JobSpec, Resources, State
from workers.executors.base import ExecutorError
from workers.executors.ecs import STOP_REASON, EcsExecutor, task_definitions

# ThrottlingException is AWS's common error, not in ECS's model: moto warns when it answers one.
pytestmark = pytest.mark.filterwarnings("ignore:.*ThrottlingException does not match")

CLUSTER = "orch-test"
POOL = "ecs-test"
REPO = Path(__file__).resolve().parents[2]
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/orchestration-ecs"
COMMANDS = {
    "ok": ["sh", "-c", 'echo "hello from $ORCH_PROCESS_ID"'],
    "fail": ["sh", "-c", "echo failing on purpose; exit 3"],
    "sleep": ["sleep", "60"],
}


def what_the_container_does(kind: str, process_id: str) -> Container | None:
    """What ECS would report for each contract command (the emulator runs no containers)."""
    return {
        "ok": Container(output=[f"hello from {process_id}"], exit_code=0),
        "fail": Container(output=["failing on purpose"], exit_code=3),
        "sleep": Container(output=["sleeping"], exit_code=None),
    }.get(kind)


@pytest.fixture(scope="module")
def emulator():
    with serving(CLUSTER) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def healthy_account(emulator):
    """Each test starts with a healthy account and leaves no task running behind it."""
    emulator.clear()
    yield
    emulator.clear()
    ecs = emulator.client("ecs")
    for page in ecs.get_paginator("list_tasks").paginate(cluster=CLUSTER, desiredStatus="RUNNING"):
        for arn in page["taskArns"]:
            ecs.stop_task(cluster=CLUSTER, task=arn, reason="test cleanup")


def settings_for(emulator, **extra) -> dict:
    subnets, groups = emulator.network
    return {
        "cluster": CLUSTER, "region": emulator.region, "endpoint_url": emulator.url,
        "capacity_provider_strategy": [
            {"capacity_provider": "FARGATE_SPOT", "weight": 4},
            {"capacity_provider": "FARGATE", "weight": 1},
        ],
        "subnets": subnets, "security_groups": groups,
        "execution_role_arn": ROLE, "task_role_arn": ROLE,
        "log_group": f"/orchestration/{POOL}", "log_settle_s": 0, **extra,
    }


@pytest.fixture
def executor(emulator):
    return EcsExecutor(POOL, settings_for(emulator))


@pytest.fixture
def make_spec(emulator):
    def make(kind, container: Container | None = None, **fields):
        process_id = str(uuid.uuid4())
        fields.setdefault("command", COMMANDS.get(kind, ["true"]))
        fields.setdefault("image", BUSYBOX)
        fields.setdefault("resources", Resources(cpus=0.25, memory_mb=512))
        fields.setdefault("pipeline", f"ecs-{kind}")
        script = container or what_the_container_does(kind, process_id)
        if script is not None:
            emulator.script(process_id, script)
        return JobSpec(process_id=process_id, version=1, target="ecs", pool=POOL, **fields)

    return make


@pytest.fixture
def unknown_handle():
    return f"arn:aws:ecs:eu-west-1:{ACCOUNT_ID}:task/{CLUSTER}/{uuid.uuid4().hex}"


class TestEcsContract(ExecutorContract):
    pass


@contextmanager
def aws_calls(*clients):
    """Count the HTTP requests (retries included) ``clients`` send, per operation, with a
    botocore event hook."""
    seen: Counter[str] = Counter()

    def count(event_name, **_):
        seen[event_name.rsplit(".", 1)[-1]] += 1

    for client in clients:
        client.meta.events.register("before-send", count)
    try:
        yield seen
    finally:
        for client in clients:
            client.meta.events.unregister("before-send", count)


def describe(emulator, handle: str) -> dict:
    """The task as ECS shows it (note: with the emulator a describe is also a lifecycle step)."""
    ecs = emulator.client("ecs")
    return ecs.describe_tasks(cluster=CLUSTER, tasks=[handle], include=["TAGS"])["tasks"][0]


def tasks_of(emulator, spec: JobSpec) -> list[str]:
    ecs = emulator.client("ecs")
    return [arn for desired in ("RUNNING", "STOPPED") for arn in ecs.list_tasks(
        cluster=CLUSTER, startedBy=spec.job_name, desiredStatus=desired)["taskArns"]]


# --- success, failure, stop ----------------------------------------------------------------------


def test_success_ships_the_logs_and_the_task_runs_as_the_pipeline_asked(
    executor, make_spec, emulator
):
    hostile = "$(touch pwned); `rm -rf /`; ' \" \\"
    spec = make_spec("ok", config={"name": hostile, "n": 3})
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert [e.state for e in events][-1] == State.SUCCEEDED
    assert events[-1].exit_code == 0
    assert full_log(events) == f"hello from {spec.process_id}\n"

    task = describe(emulator, sub.handle)
    assert task["startedBy"] == spec.job_name
    assert {"key": "orch:process-id", "value": spec.process_id} in task["tags"]
    assert task["capacityProviderName"] == "FARGATE_SPOT"  # first in the pool's strategy
    (override,) = task["overrides"]["containerOverrides"]
    assert override["command"] == spec.command  # the config never enters the command
    env = {e["name"]: e["value"] for e in override["environment"]}
    assert json.loads(env["ORCH_CONFIG"]) == spec.config
    assert env["ORCH_PROCESS_ID"] == spec.process_id
    assert (task["overrides"]["cpu"], task["overrides"]["memory"]) == ("256", "512")


def test_output_bigger_than_one_chunk_arrives_whole_before_the_end_is_reported(
    executor, make_spec
):
    lines = [f"line {n:05d} " + "x" * 200 for n in range(3000)]  # about 640 KB
    spec = make_spec("chatty", Container(output=lines, exit_code=0))
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.SUCCEEDED
    assert full_log(events) == "".join(f"{line}\n" for line in lines)
    assert sum(1 for e in events if e.log) >= 3  # shipped in chunks of at most 256 KiB
    offsets = [(e.log_offset, e.log_end) for e in events if e.log]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(offsets))


def test_out_of_memory_fails_with_the_exit_code_and_ecs_reason(executor, make_spec):
    oom = "OutOfMemoryError: Container killed due to memory usage"
    spec = make_spec("oom", Container(output=["allocating"], exit_code=137, reason=oom))
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.FAILED
    assert events[-1].exit_code == 137
    assert "OutOfMemoryError" in events[-1].message


def test_stop_is_one_stop_task_with_our_reason_however_many_polls_carry_it(
    executor, make_spec, emulator
):
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, lambda e: e.state == State.RUNNING)
    item.stop_requested = True
    with aws_calls(executor.ecs) as seen:
        events = poll_until(executor, item, ended)
    assert events[-1].state == State.STOPPED
    assert events[-1].exit_code == 143  # SIGTERM
    assert seen["StopTask"] == 1
    assert describe(emulator, sub.handle)["stoppedReason"] == STOP_REASON


def test_time_limit_stops_the_task_and_fails_it_with_the_reason(executor, make_spec):
    spec = make_spec("sleep", resources=Resources(cpus=0.25, memory_mb=512, time_limit_s=1))
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended, timeout=30)
    assert events[-1].state == State.FAILED
    assert "time limit of 1 s exceeded" in events[-1].message


# --- tasks that do not start or do not finish ---------------------------------------------------


def test_task_that_cannot_pull_its_image_fails_with_ecs_reason(executor, make_spec):
    spec = make_spec("bad-image", Container(), image="registry.invalid/nope:1.0")
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.FAILED
    assert events[-1].exit_code is None
    assert "the task failed to start" in events[-1].message
    assert "CannotPullContainerError" in events[-1].message
    assert State.RUNNING not in [e.state for e in events]  # it never ran


def test_no_capacity_starts_nothing_and_is_retried_until_there_is(executor, make_spec, emulator):
    spec = make_spec("ok")
    emulator.capacity_available = False  # ECS: Fargate (Spot) has no capacity to give
    with pytest.raises(ExecutorError) as raised:
        executor.submit(spec)
    assert not raised.value.permanent  # the worker retries it with backoff
    assert CAPACITY_UNAVAILABLE in str(raised.value)
    assert tasks_of(emulator, spec) == []

    emulator.capacity_available = True
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.SUCCEEDED
    assert tasks_of(emulator, spec) == [sub.handle]


def test_spot_interruption_fails_the_job_and_says_why(executor, make_spec, emulator):
    spec = make_spec("sleep")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, lambda e: e.state == State.RUNNING)
    emulator.interrupt_spot(sub.handle)
    events = poll_until(executor, item, ended)
    assert events[-1].state == State.FAILED
    assert "Spot" in events[-1].message


def test_a_task_ecs_no_longer_knows_is_reported_missing(executor, make_spec, emulator):
    spec = make_spec("ok")
    sub = executor.submit(spec)
    item = item_for(spec, sub.handle)
    poll_until(executor, item, ended)
    emulator.forget(sub.handle)  # ECS: about an hour after it stopped
    (event,) = executor.poll([item])
    assert event.missing
    assert event.state is None
    assert "MISSING" in event.message


def test_log_lines_arriving_after_the_task_stopped_are_still_shipped(emulator, make_spec):
    executor = EcsExecutor(POOL, settings_for(emulator, log_settle_s=1))
    spec = make_spec("late", Container(output=["early"], exit_code=0, late_output=["late"]))
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended)
    assert events[-1].state == State.SUCCEEDED
    assert full_log(events) == "early\nlate\n"


# --- one task per process -----------------------------------------------------------------------


def test_run_task_retried_after_a_lost_answer_starts_one_task(executor, make_spec, emulator):
    spec = make_spec("ok")
    emulator.lose_answer("RunTask")  # ECS started the task; its answer never came back
    sub = executor.submit(spec)  # botocore retries with the same clientToken
    assert emulator.calls[("ecs", "RunTask")] == 2
    assert tasks_of(emulator, spec) == [sub.handle]


def test_a_submit_that_failed_after_ecs_started_the_task_finds_it_next_time(
    emulator, make_spec
):
    executor = EcsExecutor("ecs-lossy", settings_for(emulator, max_attempts=2))
    spec = make_spec("ok")
    emulator.lose_answer("RunTask", times=2)  # every attempt's answer lost
    with pytest.raises(ExecutorError) as raised:
        executor.submit(spec)
    assert not raised.value.permanent
    (started,) = tasks_of(emulator, spec)  # the worker never learnt of it ...
    sub = executor.submit(spec)  # ... and the redelivered job spec finds it
    assert sub.handle == started
    assert tasks_of(emulator, spec) == [started]


def test_two_workers_starting_one_spec_at_once_get_one_task(executor, make_spec, emulator):
    spec = make_spec("sleep")
    first = executor.start(spec)  # both passed find() before either ran run_task
    second = EcsExecutor(POOL, executor.settings).start(spec)
    assert second.handle == first.handle
    assert tasks_of(emulator, spec) == [first.handle]


def test_task_definition_is_registered_once_per_pipeline_version(executor, make_spec, emulator):
    pipeline = f"td-{uuid.uuid4().hex[:8]}"
    specs = [make_spec("ok", pipeline=pipeline) for _ in range(2)]
    with aws_calls(executor.ecs) as seen:
        handles = [executor.submit(s).handle for s in specs]
        task_definitions._KNOWN.clear()  # a restarted worker remembers nothing ...
        restarted = EcsExecutor(POOL, executor.settings)
        handles.append(restarted.submit(make_spec("ok", pipeline=pipeline)).handle)
    assert seen["RegisterTaskDefinition"] == 1  # ... and finds the revision by its tags
    definitions = {describe(emulator, h)["taskDefinitionArn"] for h in handles}
    assert len(definitions) == 1
    (first,) = definitions
    assert first.split("/")[-1] == f"orch-{pipeline}:1"

    version_2 = make_spec("ok", pipeline=pipeline, command=["sh", "-c", "echo version 2"])
    version_2.version = 2
    second = describe(emulator, executor.submit(version_2).handle)["taskDefinitionArn"]
    assert second.split("/")[-1] == f"orch-{pipeline}:2"


# --- polling many tasks, and AWS saying no -------------------------------------------------------


def test_250_running_tasks_are_polled_in_3_describe_tasks_calls(executor, make_spec):
    specs = [make_spec("sleep") for _ in range(250)]
    items = [item_for(s, executor.start(s).handle) for s in specs]
    for _ in range(2):  # ECS: PROVISIONING, PENDING, then RUNNING
        executor.poll(items)
    with aws_calls(executor.ecs_polling, executor.logs_polling) as seen:
        events = executor.poll(items)
    assert [e.process_id for e in events] == [s.process_id for s in specs]
    assert {e.state for e in events} == {State.RUNNING}
    assert seen["DescribeTasks"] == 3
    assert seen["GetLogEvents"] == 50  # log_reads_per_poll: the pool stays under CloudWatch's rate

    read = {e.process_id for e in events if e.log}
    for _ in range(4):  # five polls read every running task's logs once
        read |= {e.process_id for e in executor.poll(items) if e.log}
    assert read == {s.process_id for s in specs}


def test_throttled_describe_tasks_is_retried_not_turned_into_a_failed_job(emulator, make_spec):
    executor = EcsExecutor("ecs-throttled", settings_for(emulator))
    spec = make_spec("sleep")
    item = item_for(spec, executor.submit(spec).handle)
    poll_until(executor, item, lambda e: e.state == State.RUNNING)
    emulator.throttle("DescribeTasks", 2)  # AWS: "Rate exceeded"
    before = emulator.calls[("ecs", "DescribeTasks")]
    (event,) = executor.poll([item])
    assert event.state == State.RUNNING
    assert not event.missing
    assert emulator.calls[("ecs", "DescribeTasks")] - before == 3  # two refused, one answered


def test_a_poll_aws_keeps_refusing_raises_and_decides_nothing(emulator, make_spec):
    executor = EcsExecutor("ecs-refused", settings_for(emulator))
    spec = make_spec("ok")
    item = item_for(spec, executor.submit(spec).handle)
    emulator.throttle("DescribeTasks", 3)
    before = emulator.calls[("ecs", "DescribeTasks")]
    with pytest.raises(ExecutorError) as raised:
        executor.poll([item])
    assert not raised.value.permanent
    assert "ThrottlingException" in str(raised.value)
    # A poll gives up after poll_attempts (3), not max_attempts (8): the next comes soon.
    assert emulator.calls[("ecs", "DescribeTasks")] - before == 3
    events = poll_until(executor, item, ended)  # the next polls carry on where it was
    assert events[-1].state == State.SUCCEEDED


def test_a_submission_outlasts_more_throttling_than_a_poll(emulator, make_spec):
    executor = EcsExecutor("ecs-throttled-submit", settings_for(emulator))
    spec = make_spec("ok")
    emulator.throttle("RunTask", 4)  # more than a poll takes, fewer than max_attempts (8)
    sub = executor.submit(spec)
    assert tasks_of(emulator, spec) == [sub.handle]
    assert emulator.calls[("ecs", "RunTask")] == 5


# --- what is refused before anything starts -----------------------------------------------------


def test_refusals_are_permanent_and_start_nothing(executor, make_spec, emulator):
    cases = {
        "needs run.image": make_spec("no-image", image=""),
        "has no GPUs": make_spec("gpu", resources=Resources(cpus=1, memory_mb=2048, gpus=1)),
        "limit of 8192": make_spec("big", config={"data": "x" * 9000}),
    }
    for words, spec in cases.items():
        with pytest.raises(ExecutorError) as raised:
            executor.submit(spec)
        assert raised.value.permanent
        assert words in str(raised.value)
        assert tasks_of(emulator, spec) == []


def test_credentials_in_pool_settings_are_refused(emulator):
    with pytest.raises(ExecutorError) as raised:
        EcsExecutor(POOL, settings_for(emulator, aws_secret_access_key="x"))
    assert raised.value.permanent
    assert "standard boto3 chain" in str(raised.value)


def test_gpus_reach_ecs_as_resource_requirements_on_an_ec2_pool(emulator, make_spec):
    emulator.create_cluster("orch-gpu")
    emulator.add_container_instance("orch-gpu")
    settings = settings_for(emulator, cluster="orch-gpu", launch_type="EC2",
                            network_mode="bridge", capacity_provider_strategy=None)
    executor = EcsExecutor("ecs-gpu", settings)
    spec = make_spec("ok", resources=Resources(cpus=1, memory_mb=1024, gpus=2))
    sub = executor.submit(spec)
    task = executor.ecs.describe_tasks(cluster="orch-gpu", tasks=[sub.handle])["tasks"][0]
    (override,) = task["overrides"]["containerOverrides"]
    assert override["resourceRequirements"] == [{"type": "GPU", "value": "2"}]
    definition = executor.ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])
    assert definition["taskDefinition"]["requiresCompatibilities"] == ["EC2"]
    executor.cancel(sub.handle)


# --- the example pipeline and pool as shipped ----------------------------------------------------


def test_the_example_pipeline_runs_on_the_example_pool(emulator):
    pool = yaml.safe_load((REPO / "pipelines/pools/ecs-spot.yaml").read_text())
    pipeline = yaml.safe_load((REPO / "pipelines/hello-ecs.yaml").read_text())
    assert (pool["target"], pipeline["target"], pipeline["pool"]) == ("ecs", "ecs", pool["name"])
    subnets, groups = emulator.network
    settings = {**pool["settings"], "cluster": CLUSTER, "region": emulator.region,
                "endpoint_url": emulator.url, "subnets": subnets, "security_groups": groups}
    executor = EcsExecutor(pool["name"], settings)
    emulator.known_images.add(pipeline["run"]["image"])
    process_id = str(uuid.uuid4())
    emulator.script(process_id, Container(output=[f"hello from {process_id}"], exit_code=0))
    spec = JobSpec(
        process_id=process_id, pipeline=pipeline["name"], version=1, target="ecs",
        pool=pool["name"], image=pipeline["run"]["image"], command=pipeline["run"]["command"],
        config=pipeline.get("defaults") or {}, resources=Resources(cpus=0.25, memory_mb=512),
        pool_settings=settings,
    )
    sub = executor.submit(spec)
    events = poll_until(executor, item_for(spec, sub.handle), ended, timeout=60)
    assert events[-1].state == State.SUCCEEDED
    assert describe(emulator, sub.handle)["capacityProviderName"] == "FARGATE_SPOT"


# --- datasets in, outputs out, through S3 ---------------------------------------------------


def test_data_is_staged_through_s3_by_the_task_definitions_stage_containers(
        emulator, make_spec, monkeypatch, tmp_path):
    """The task definition's shape (volumes, the stage containers, their order), the run's
    overrides, and, with the stagers run here against the bucket as the task would run them
    (the emulator runs no containers), the outputs the poll reads back from S3."""
    dataset = b"one fish two fish\n" * 100
    monkeypatch.setenv("ORCH_S3_ENDPOINT_URL", emulator.url)
    monkeypatch.setenv("ORCH_STORAGE_URL", "s3://orch-data/store")
    s3 = emulator.client("s3")
    s3.create_bucket(Bucket="orch-data", CreateBucketConfiguration={
        "LocationConstraint": emulator.region})
    s3.put_object(Bucket="orch-data", Key="store/datasets/d1", Body=dataset)
    executor = EcsExecutor(POOL, settings_for(emulator, stage_image="orchestration/worker:1"))
    spec = make_spec("ok", config={"input": "d1", "n": 1})
    spec.inputs = [{"pointer": "/input", "name": "input.txt", "dataset": "d1",
                    "key": "datasets/d1", "size": len(dataset),
                    "sha256": hashlib.sha256(dataset).hexdigest(), "url": ""}]
    spec.outputs = {"prefix": f"outputs/{spec.process_id}/", "max_bytes": 1000,
                    "upload_url": ""}
    sub = executor.submit(spec)

    task = describe(emulator, sub.handle)
    definition = emulator.client("ecs").describe_task_definition(
        taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    containers = {c["name"]: c for c in definition["containerDefinitions"]}
    assert [v["name"] for v in definition["volumes"]] == ["orch-inputs", "orch-outputs"]
    main, stage_in, stage_out = containers["main"], containers["orch-stage-in"], \
        containers["orch-stage-out"]
    assert {(m["containerPath"], m["readOnly"]) for m in main["mountPoints"]} == {
        ("/orch/inputs", True), ("/orch/outputs", False)}
    assert main["dependsOn"] == [{"containerName": "orch-stage-in", "condition": "SUCCESS"}]
    assert stage_out["dependsOn"] == [{"containerName": "main", "condition": "COMPLETE"}]
    assert (main["essential"], stage_in["essential"], stage_out["essential"]) == (
        False, False, True)
    assert stage_in["image"] == stage_out["image"] == "orchestration/worker:1"
    assert stage_in["command"][-1] == "in"
    assert stage_out["command"][-1] == "out"

    overrides = {c["name"]: {e["name"]: e["value"] for e in c.get("environment") or []}
                 for c in task["overrides"]["containerOverrides"]}
    job_env = overrides["main"]
    assert json.loads(job_env["ORCH_CONFIG"]) == {"input": "/orch/inputs/input.txt", "n": 1}
    assert (job_env["ORCH_INPUT_DIR"], job_env["ORCH_OUTPUT_DIR"]) == (
        "/orch/inputs", "/orch/outputs")

    # The task's life, its stagers run here with the environment ECS would give them.
    from workers import ecs_stage

    inputs_dir, outputs_dir = tmp_path / "inputs", tmp_path / "outputs"
    inputs_dir.mkdir()
    outputs_dir.mkdir()
    with monkeypatch.context() as env:
        for key, value in overrides["orch-stage-in"].items():
            env.setenv(key, value)
        ecs_stage.stage_in(inputs_dir, outputs_dir)
    assert (inputs_dir / "input.txt").read_bytes() == dataset
    assert stat.S_IMODE((inputs_dir / "input.txt").stat().st_mode) == 0o444
    assert stat.S_IMODE(inputs_dir.stat().st_mode) == 0o555
    result = {"sha256": hashlib.sha256((inputs_dir / "input.txt").read_bytes()).hexdigest()}
    (outputs_dir / "result.json").write_text(json.dumps(result))
    (outputs_dir / "sub dir").mkdir()
    (outputs_dir / "sub dir" / "big.bin").write_bytes(b"x" * 2000)  # over the cap of 1000
    with monkeypatch.context() as env:
        for key, value in overrides["orch-stage-out"].items():
            env.setenv(key, value)
        assert ecs_stage.stage_out(outputs_dir) == 0

    events = poll_until(executor, item_for(spec, sub.handle), ended)
    last = events[-1]
    assert last.state == State.SUCCEEDED
    body = json.dumps(result).encode()
    assert last.outputs == [{"path": "result.json", "size": len(body),
                             "sha256": hashlib.sha256(body).hexdigest(),
                             "key": f"outputs/{spec.process_id}/result.json"}]
    assert "sub dir/big.bin (2000 bytes, over the cap of 1000 bytes in all)" in last.message
    keys = [o["Key"] for o in s3.list_objects_v2(
        Bucket="orch-data", Prefix=f"store/outputs/{spec.process_id}/")["Contents"]]
    assert keys == [f"store/outputs/{spec.process_id}/result.json"]  # over the cap: removed


def test_a_job_reading_a_dataset_on_a_pool_without_a_bucket_or_stage_image_is_refused(
        emulator, executor, make_spec, monkeypatch, tmp_path):
    spec = make_spec("ok")
    spec.outputs = {"prefix": f"outputs/{spec.process_id}/", "max_bytes": 10, "upload_url": ""}
    spec.inputs = [{"pointer": "/input", "name": "input", "dataset": "d1",
                    "key": "datasets/d1", "size": 1, "sha256": "0" * 64}]
    spec.config = {"input": "d1"}
    monkeypatch.setenv("ORCH_STORAGE_URL", f"file://{tmp_path}")
    with pytest.raises(ExecutorError, match="ORCH_STORAGE_URL must be s3") as raised:
        executor.submit(spec)
    assert raised.value.permanent
    monkeypatch.setenv("ORCH_STORAGE_URL", "s3://orch-data/store")
    with pytest.raises(ExecutorError, match=r"settings\.stage_image") as raised:
        executor.submit(spec)
    assert raised.value.permanent
    assert tasks_of(emulator, spec) == []


def test_a_job_reading_no_dataset_runs_on_a_pool_without_stage_image_keeping_no_outputs(
        emulator, executor, make_spec, monkeypatch, tmp_path):
    """Every job is given an output dir; a pool that has no stage image cannot bring one
    back from a task, and runs its jobs as before rather than refusing them all."""
    spec = make_spec("ok")
    spec.outputs = {"prefix": f"outputs/{spec.process_id}/", "max_bytes": 10, "upload_url": ""}
    monkeypatch.setenv("ORCH_STORAGE_URL", f"file://{tmp_path}")
    submission = executor.submit(spec)
    assert submission.handle
    assert len(tasks_of(emulator, spec)) == 1
