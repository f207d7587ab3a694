"""sbatch options (issue 22): each value checked before any Slurm target sees it, each
option passed on as one sbatch argv element or one slurmrestd field, and the pool's allowed
lists letting through what they list and nothing else."""

from __future__ import annotations

import pytest

from workers.executors.slurm.sbatch_render import exported, rest_fields, sbatch_argv
from workers.sbatch_options import (
    NAMES,
    OptionError,
    features_of,
    outside_allowed,
    parse,
    parse_allowed,
)

EVERY = {
    "constraint": "[a100|v100]&ib",
    "nodes": "2-4",
    "ntasks": 8,
    "cpus_per_task": 4,
    "gres": "nvme:1,gpu_mem:a100:2",
    "reservation": "maint-2026",
    "exclusive": "user",
    "mail_type": "END,FAIL",
    "mail_user": "ada@lab.example.org",
    "chdir": "/shared/projects/ada/",
    "export": ["OMP_NUM_THREADS=4", "LMOD_CMD"],
}


def test_every_option_is_read_and_normalised():
    read = parse(EVERY)
    assert set(read) == set(NAMES)
    assert read["mail_type"] == ["END", "FAIL"]  # a comma string or a list: a list
    assert read["chdir"] == "/shared/projects/ada"  # the trailing / dropped
    assert parse({"nodes": 2, "exclusive": True, "mail_user": "ada"}) == {
        "nodes": 2, "exclusive": True, "mail_user": "ada"}
    assert parse(None) == {}
    assert parse({"constraint": None}) == {}


@pytest.mark.parametrize("values, named", [
    ({"constraint": "a100; rm -rf /"}, "sbatch.constraint"),
    ({"constraint": "a100 && ib"}, "sbatch.constraint"),
    ({"constraint": "&|"}, "sbatch.constraint"),  # operators only, no feature
    ({"nodes": 0}, "sbatch.nodes"),
    ({"nodes": "4-2"}, "sbatch.nodes"),
    ({"nodes": True}, "sbatch.nodes"),
    ({"ntasks": 2.5}, "sbatch.ntasks"),
    ({"ntasks": "8"}, "sbatch.ntasks"),
    ({"cpus_per_task": -1}, "sbatch.cpus_per_task"),
    ({"gres": "nvme"}, "sbatch.gres"),  # no count
    ({"gres": "nvme:1\n#SBATCH --uid=0"}, "sbatch.gres"),
    ({"gres": "gpu:2"}, "sbatch.gres"),  # GPUs are resources.gpus
    ({"reservation": "a b"}, "sbatch.reservation"),
    ({"exclusive": "yes"}, "sbatch.exclusive"),
    ({"exclusive": 1}, "sbatch.exclusive"),
    ({"exclusive": 0.0}, "sbatch.exclusive"),
    ({"mail_type": ["END", "SOMETIMES"]}, "sbatch.mail_type"),
    ({"mail_type": "end"}, "sbatch.mail_type"),
    ({"mail_type": []}, "sbatch.mail_type"),
    ({"mail_user": "ada@lab.example.org,eve@evil.example"}, "sbatch.mail_user"),
    ({"chdir": "relative/dir"}, "sbatch.chdir"),
    ({"chdir": "/shared/../etc"}, "sbatch.chdir"),
    ({"chdir": "/shared/$HOME"}, "sbatch.chdir"),
    ({"export": "A=1"}, "sbatch.export"),  # a list of rules
    ({"export": ["A=1,B=2"]}, "sbatch.export[0]"),  # sbatch would split it
    ({"export": ["A='x'"]}, "sbatch.export[0]"),
    ({"export": ["ORCH_CONFIG_FILE=/etc/shadow"]}, "sbatch.export[0]"),
    ({"export": ["SLURM_JWT"]}, "sbatch.export[0]"),
    ({"export": ["NONE"]}, "sbatch.export[0]"),
    ({"export": ["1BAD=x"]}, "sbatch.export[0]"),
    ({"wrap": "rm -rf /"}, "sbatch.wrap"),  # not an option here
    (["constraint"], "sbatch"),
])
def test_a_bad_value_is_refused_naming_its_option(values, named):
    with pytest.raises(OptionError) as refused:
        parse(values)
    assert str(refused.value).startswith(f"{named}:"), refused.value


def test_constraint_features_leave_out_operators_and_counts():
    assert features_of("[a100|v100]&ib") == {"a100", "v100", "ib"}
    assert features_of("bigmem*2,fast") == {"bigmem", "fast"}


def test_each_option_is_one_argv_element_that_slurm_reads_as_data():
    argv = sbatch_argv(parse(EVERY), gpus=1)
    assert argv == [
        "--constraint=[a100|v100]&ib",
        "--ntasks=8",
        "--cpus-per-task=4",
        "--reservation=maint-2026",
        "--mail-user=ada@lab.example.org",
        "--chdir=/shared/projects/ada",
        "--nodes=2-4",
        "--gres=gpu:1,nvme:1,gpu_mem:a100:2",  # the job's GPUs kept beside the others
        "--exclusive=user",
        "--mail-type=END,FAIL",
        "--export=ALL,OMP_NUM_THREADS=4,LMOD_CMD",
    ]
    assert sbatch_argv({}) == ["--export=ALL"]  # as before: the environment sbatch is given
    assert sbatch_argv({"exclusive": True}) == ["--exclusive", "--export=ALL"]
    assert sbatch_argv({"exclusive": False}) == ["--export=ALL"]


def test_each_option_is_one_slurmrestd_field_in_v0_0_38_names(monkeypatch):
    monkeypatch.delenv("LMOD_CMD", raising=False)
    job = rest_fields(parse(EVERY), gpus=0, environment={"PATH": "/usr/bin"})
    assert job == {
        "constraints": "[a100|v100]&ib",
        "nodes": [2, 4],
        "tasks": 8,
        "cpus_per_task": 4,
        "gres": "nvme:1,gpu_mem:a100:2",
        "reservation": "maint-2026",
        "exclusive": "user",
        "mail_type": "END,FAIL",
        "mail_user": "ada@lab.example.org",
        "current_working_directory": "/shared/projects/ada",
        # LMOD_CMD is not set in this test's environment: left out, not made empty
        "environment": {"PATH": "/usr/bin", "OMP_NUM_THREADS": "4"},
    }
    assert rest_fields({"nodes": 3, "exclusive": True}) == {"nodes": [3, 3],
                                                             "exclusive": "exclusive"}
    assert rest_fields({}) == {}


def test_a_bare_export_name_takes_the_submission_nodes_value():
    rules = parse({"export": ["LMOD_CMD", "SCRATCH=/scratch/ada", "UNSET_HERE"]})
    assert exported(rules, {"LMOD_CMD": "/usr/share/lmod/lmod", "OTHER": "x"}) == {
        "LMOD_CMD": "/usr/share/lmod/lmod", "SCRATCH": "/scratch/ada"}


ALLOWED = {
    "constraint": ["a100", "v100", "ib"],
    "nodes": 4,
    "ntasks": 16,
    "cpus_per_task": 8,
    "gres": ["nvme", "gpu_mem:a100"],
    "reservation": ["maint-2026"],
    "exclusive": [True, "user"],
    "mail_type": ["END", "FAIL"],
    "mail_user": ["*@lab.example.org"],
    "chdir": ["/shared/projects"],
    "export": ["OMP_NUM_THREADS", "LMOD_CMD"],
}


def test_values_within_the_pools_lists_pass():
    allowed = parse_allowed(ALLOWED)
    assert outside_allowed(parse(EVERY), allowed) == []
    assert outside_allowed(parse({"exclusive": False, "chdir": "/shared/projects"}),
                           allowed) == []


@pytest.mark.parametrize("values, why", [
    ({"constraint": "a100&h100"}, "sbatch.constraint: h100 not among the features allowed "
                                  "(pool slurm-main's allow_sbatch.constraint: a100, v100, ib)"),
    ({"nodes": "2-8"}, "sbatch.nodes: 8 is more than the 4 allowed"),
    ({"ntasks": 17}, "sbatch.ntasks: 17 is more than the 16 allowed"),
    ({"gres": "gpu_mem:h100:1"}, "sbatch.gres: gpu_mem:h100:1 not among the gres allowed"),
    ({"gres": "nvme:1,tmpdisk:2"}, "sbatch.gres: tmpdisk:2 not among the gres allowed"),
    ({"reservation": "other"}, "sbatch.reservation: other not among the reservations"),
    ({"exclusive": "mcs"}, "sbatch.exclusive: mcs not among the values allowed"),
    ({"mail_type": ["ALL"]}, "sbatch.mail_type: ALL not among the mail types allowed"),
    ({"mail_user": "eve@evil.example"}, "sbatch.mail_user: eve@evil.example matches none"),
    ({"chdir": "/shared/projectsX"}, "sbatch.chdir: /shared/projectsX is not (under)"),
    ({"chdir": "/etc"}, "sbatch.chdir: /etc is not (under)"),
    ({"export": ["PATH=/tmp/evil"]}, "sbatch.export: PATH not among the names allowed"),
])
def test_a_value_outside_the_pools_list_is_refused_naming_its_option(values, why):
    problems = outside_allowed(parse(values), parse_allowed(ALLOWED), pool="slurm-main")
    assert len(problems) == 1, problems
    assert problems[0].startswith(why), problems


def test_an_option_the_pool_does_not_list_is_refused():
    assert outside_allowed(parse({"reservation": "maint-2026"}), parse_allowed({}),
                           pool="p") == [
        "sbatch.reservation: pool p's allow_sbatch lets no pipeline or run set reservation"]


@pytest.mark.parametrize("allowed, named", [
    ({"constraint": "a100"}, "allow_sbatch.constraint"),  # a list
    ({"constraint": ["a100|v100"]}, "allow_sbatch.constraint[0]"),  # names, not expressions
    ({"nodes": [1, 2]}, "allow_sbatch.nodes"),  # the most
    ({"mail_type": ["SOMETIMES"]}, "allow_sbatch.mail_type[0]"),
    ({"chdir": ["shared"]}, "allow_sbatch.chdir[0]"),
    ({"export": ["ORCH_SIGNING_KEY"]}, "allow_sbatch.export[0]"),
    ({"exclusive": ["always"]}, "allow_sbatch.exclusive[0]"),
    ({"uid": [0]}, "allow_sbatch.uid"),
])
def test_a_bad_allowed_list_is_refused_naming_its_entry(allowed, named):
    with pytest.raises(OptionError) as refused:
        parse_allowed(allowed)
    assert str(refused.value).startswith(f"{named}:"), refused.value
