"""The slurmrestd version tables (workers/executors/slurm/rest_versions.py) without a daemon:
the choice among versions, and the shapes of the versions no cluster here serves (v0.0.39,
v0.0.43, v0.0.44). v0.0.38 and v0.0.42 are spoken to the real 22.05 and 24.11 daemons in
test_slurm_rest.py, and the sbatch options in v0.0.38 and v0.0.40-v0.0.42 in
test_slurm_sbatch_options.py."""

from __future__ import annotations

import pytest

from workers.executors.slurm.rest_versions import VERSIONS, NoCommonVersion, choose
from workers.executors.slurm.sbatch_render import rest_fields
from workers.executors.slurm.states import JobRecord, slurm_status
from workers.sbatch_options import parse

NEUTRAL = {"name": "orch-x", "environment": {"A": "1", "B": "x=y"}, "time_limit": 5,
           "memory_per_node": 128, "cpus_per_task": 2, "gres": "gpu:1", "partition": "main",
           "constraints": "intel"}  # a field no table maps goes through as it is


def test_the_newest_version_both_know_is_chosen_or_the_pinned_one():
    assert choose(["v0.0.36", "v0.0.37", "v0.0.38"]).name == "v0.0.38"  # 22.05
    assert choose(["v0.0.40", "v0.0.41", "v0.0.42"]).name == "v0.0.42"  # 24.11
    assert choose(["v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45"]).name == "v0.0.44"
    assert choose(["v0.0.40", "v0.0.41", "v0.0.42"], pinned="v0.0.40").name == "v0.0.40"


@pytest.mark.parametrize("served, pinned, said", [
    (["v0.0.45", "v0.0.46"], None,
     "slurmrestd serves v0.0.45, v0.0.46; this worker speaks v0.0.38, v0.0.39"),
    ([], None, "slurmrestd serves no slurmctld API version"),
    (["v0.0.40", "v0.0.41", "v0.0.42"], "v0.0.38",
     "settings.api_version pins v0.0.38, but slurmrestd serves v0.0.40, v0.0.41, v0.0.42"),
    (["v0.0.37"], "v0.0.37", "settings.api_version v0.0.37 is not a version this worker speaks"),
])
def test_no_common_version_names_what_the_daemon_serves(served, pinned, said):
    with pytest.raises(NoCommonVersion) as raised:
        choose(served, pinned)
    assert said in str(raised.value)


def test_v0_0_38_takes_the_neutral_description_as_it_is():
    assert VERSIONS["v0.0.38"].submit_body(NEUTRAL, "#!/bin/sh\n") == {
        "job": NEUTRAL, "script": "#!/bin/sh\n"}


@pytest.mark.parametrize("name", ["v0.0.39", "v0.0.40", "v0.0.41", "v0.0.42", "v0.0.43",
                                  "v0.0.44"])
def test_later_versions_write_lists_and_number_objects(name):
    job = VERSIONS[name].job(NEUTRAL)
    assert job["environment"] == ["A=1", "B=x=y"]
    assert job["time_limit"] == {"set": True, "infinite": False, "number": 5}
    assert job["memory_per_node"] == {"set": True, "infinite": False, "number": 128}
    assert job["cpus_per_task"] == 2
    assert job["tres_per_node"] == "gres/gpu:1"
    assert "gres" not in job
    assert job["constraints"] == "intel"


LATER = ["v0.0.39", "v0.0.40", "v0.0.41", "v0.0.42", "v0.0.43", "v0.0.44"]
# Every sbatch option, as the slurm_rest target describes it in v0.0.38's names.
OPTIONS = rest_fields(parse({
    "constraint": "[a100|v100]&ib", "nodes": "2-4", "ntasks": 8, "cpus_per_task": 4,
    "gres": "nvme:1,gpu_mem:a100:2", "reservation": "maint-2026", "exclusive": "user",
    "mail_type": "END,TIME_LIMIT_90,INVALID_DEPEND", "mail_user": "ada@lab.example.org",
    "chdir": "/shared/projects/ada"}), gpus=2)


def test_v0_0_38_takes_the_sbatch_options_in_its_own_names():
    assert VERSIONS["v0.0.38"].job(OPTIONS) == OPTIONS
    assert OPTIONS["nodes"] == [2, 4]
    assert OPTIONS["mail_type"] == "END,TIME_LIMIT_90,INVALID_DEPEND"
    assert OPTIONS["exclusive"] == "user"


@pytest.mark.parametrize("name", LATER)
def test_later_versions_write_the_sbatch_options_in_their_names_and_shapes(name):
    """As 24.11's OpenAPI document describes v0.0.40-v0.0.42 (and its daemon took them)."""
    assert VERSIONS[name].job(OPTIONS) == {
        "constraints": "[a100|v100]&ib",
        "minimum_nodes": 2,
        "maximum_nodes": 4,
        "tasks": 8,
        "cpus_per_task": 4,
        # Each item is a TRES of its own: gres/ before every one, the job's GPUs first.
        "tres_per_node": "gres/gpu:2,gres/nvme:1,gres/gpu_mem:a100:2",
        "reservation": "maint-2026",
        "shared": ["user"],
        "mail_type": ["END", "TIME=90%", "INVALID_DEPENDENCY"],
        "mail_user": "ada@lab.example.org",
        "current_working_directory": "/shared/projects/ada",
    }


@pytest.mark.parametrize("name", LATER)
@pytest.mark.parametrize("options, fields", [
    ({"nodes": 3}, {"minimum_nodes": 3, "maximum_nodes": 3}),
    ({"exclusive": True}, {"shared": ["none"]}),  # the whole node: shares it with none
    ({"exclusive": "mcs"}, {"shared": ["mcs"]}),
    ({"exclusive": False}, {}),
    # sbatch's ALL, as scontrol shows it on 22.05 and 24.11
    ({"mail_type": ["ALL"]},
     {"mail_type": ["INVALID_DEPENDENCY", "BEGIN", "END", "FAIL", "REQUEUE", "STAGE_OUT"]}),
    ({"mail_type": ["BEGIN", "ALL"]},
     {"mail_type": ["BEGIN", "INVALID_DEPENDENCY", "END", "FAIL", "REQUEUE", "STAGE_OUT"]}),
    ({"mail_type": ["TIME_LIMIT", "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS"]},
     {"mail_type": ["TIME=100%", "TIME=80%", "TIME=50%", "ARRAY_TASKS"]}),
    # NONE anywhere is no mail to sbatch: an empty list is none to slurmrestd
    ({"mail_type": ["END", "NONE"]}, {"mail_type": []}),
    ({"gres": "nvme:1"}, {"tres_per_node": "gres/nvme:1"}),
])
def test_each_option_value_has_its_later_shape(name, options, fields):
    assert VERSIONS[name].job(rest_fields(parse(options))) == fields


def test_one_neutral_field_may_become_several():
    """nodes is the one that does: the others keep one name each."""
    job = VERSIONS["v0.0.42"].job({"name": "orch-x", "nodes": [1, 2], "partition": "main"})
    assert job == {"name": "orch-x", "minimum_nodes": 1, "maximum_nodes": 2,
                   "partition": "main"}


def record(name: str, job: dict) -> JobRecord:
    version = VERSIONS[name]
    return JobRecord("7", "orch-x", version.job_state(job["job_state"]),
                     version.exit_code(job["exit_code"]))


def verbose(status: str, code: int = 0, signal: int = 0) -> dict:
    return {"status": [status],
            "return_code": {"set": True, "infinite": False, "number": code},
            "signal": {"id": {"set": bool(signal), "infinite": False, "number": signal},
                       "name": ""}}


@pytest.mark.parametrize("name, job, state, exit_code", [
    ("v0.0.38", {"job_state": "FAILED", "exit_code": 768}, "FAILED", 3),
    ("v0.0.39", {"job_state": "FAILED", "exit_code": {"set": True, "number": 768}}, "FAILED", 3),
    ("v0.0.39", {"job_state": "CANCELLED", "exit_code": {"set": True, "number": 15}},
     "STOPPED", 143),
    ("v0.0.43", {"job_state": ["FAILED"], "exit_code": verbose("ERROR", 3)}, "FAILED", 3),
    ("v0.0.44", {"job_state": ["CANCELLED"], "exit_code": verbose("SIGNALED", 0, 15)},
     "STOPPED", 143),
    ("v0.0.44", {"job_state": ["COMPLETED"], "exit_code": verbose("SUCCESS")}, "SUCCEEDED", 0),
    # Ended, still cleaning up: running, as squeue says COMPLETING.
    ("v0.0.42", {"job_state": ["COMPLETED", "COMPLETING"], "exit_code": verbose("SUCCESS")},
     "RUNNING", None),
    ("v0.0.42", {"job_state": ["PENDING"], "exit_code": verbose("PENDING")}, "SUBMITTED", None),
])
def test_states_and_exit_codes_read_in_each_versions_shape(name, job, state, exit_code):
    status = slurm_status(record(name, job))
    assert status.state is not None
    assert status.state.value == state
    assert status.exit_code == exit_code
