"""sbatch options through the control plane (issue 22): a Slurm pool's file sets defaults and
what may be asked (``sbatch``, ``allow_sbatch``); a pipeline file sets options only within
that list, else it is refused when it loads, named by its file and field; a POST sets those
its pipeline's ``allow.sbatch`` names, within the pool's list, else a 400 naming the field that
creates nothing. What is accepted is shown by the API, reaches the job spec (signed like the
rest) and is kept by a re-run."""

from __future__ import annotations

import json

import pytest

from apps.pipelines.services import pipelines_load
from apps.processes.models import Process
from tests.test_run_options import folder_with, post
from workers.contract import JobSpec
from workers.signing import SignatureError, sign, verify

pytestmark = pytest.mark.django_db

PROCESSES = "/api/processes/"

HPC_POOL = """
name: hpc
target: slurm
capacity: 4
settings: {partition: main, user: orch-slurm, work_root: var/work/hpc}
sbatch:
  mail_type: [FAIL]
  mail_user: ops@lab.example.org
  export: [SITE=lab]
allow_sbatch:
  constraint: [a100, v100, ib]
  nodes: 2
  ntasks: 8
  mail_type: [END, FAIL]
  mail_user: ["*@lab.example.org"]
  chdir: [/shared/projects]
  export: [OMP_NUM_THREADS]
"""

TRAIN = """
name: mpi-train
target: slurm
pool: hpc
run:
  command: [srun, ./train]
sbatch: {constraint: a100, ntasks: 4}
allow: {sbatch: [constraint, ntasks, mail_type, mail_user, chdir]}
"""

FIXED = """
name: mpi-fixed
target: slurm
pool: hpc
run:
  command: ["true"]
sbatch: {nodes: 2}
"""

ANY = """
name: mpi-any
target: slurm
pool: hpc
run:
  command: ["true"]
allow: {sbatch: true}
"""


@pytest.fixture
def loaded(tmp_path, pipelines):
    report = pipelines_load(folder_with(tmp_path, {
        "pools/hpc.yaml": HPC_POOL, "mpi-train.yaml": TRAIN, "mpi-fixed.yaml": FIXED,
        "mpi-any.yaml": ANY}))
    assert not report.errors, report.errors
    return report


# --- accepted -----------------------------------------------------------------------------------


def test_options_are_shown_reach_the_signed_job_spec_and_a_rerun_keeps_them(
        api, loaded, specs, django_capture_on_commit_callbacks):
    asked = {"constraint": "v100&ib", "mail_type": "END,FAIL", "chdir": "/shared/projects/ada"}
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, {"pipeline": "mpi-train", "sbatch": asked})
    assert response.status_code == 201, response.content
    pid = response.json()["id"]
    # The run's over the pipeline's over the pool's defaults, each option whole.
    merged = {"mail_type": ["END", "FAIL"], "mail_user": "ops@lab.example.org",
              "export": ["SITE=lab"], "constraint": "v100&ib", "ntasks": 4,
              "chdir": "/shared/projects/ada"}
    assert api.get(f"{PROCESSES}{pid}/").json()["sbatch"] == merged
    assert api.get(PROCESSES).json()["results"][0]["sbatch"] == merged

    [spec] = specs
    assert spec.sbatch == merged
    signed = sign("spec", "hpc", spec.to_dict())
    assert JobSpec.from_dict(verify(signed, "spec", "hpc")).sbatch == merged
    tampered = {**signed, "body": {**signed["body"], "sbatch": {**merged, "chdir": "/etc"}}}
    with pytest.raises(SignatureError):  # a changed option is a forged spec
        verify(tampered, "spec", "hpc")

    with django_capture_on_commit_callbacks(execute=True):
        again = api.post(f"{PROCESSES}{pid}/rerun/")
    assert again.status_code == 201, again.content
    assert again.json()["sbatch"] == merged
    assert specs[1].sbatch == merged


def test_a_run_that_sets_nothing_gets_its_pipelines_and_pools_options(
        api, loaded, specs, django_capture_on_commit_callbacks):
    assert api.get("/api/pipelines/mpi-fixed/").json()["sbatch"] == {"nodes": 2}
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, {"pipeline": "mpi-fixed"})
    assert response.status_code == 201, response.content
    assert specs[0].sbatch == {"mail_type": ["FAIL"], "mail_user": "ops@lab.example.org",
                               "export": ["SITE=lab"], "nodes": 2}


def test_allow_sbatch_true_lets_a_run_set_what_the_pool_lists(api, loaded):
    response = post(api, {"pipeline": "mpi-any", "sbatch": {"export": ["OMP_NUM_THREADS=8"],
                                                            "nodes": 2}})
    assert response.status_code == 201, response.content
    assert response.json()["sbatch"]["export"] == ["OMP_NUM_THREADS=8"]


def test_form_encoded_sbatch_is_json_text(api, loaded):
    response = api.post(PROCESSES, {"pipeline": "mpi-train",
                                    "sbatch": json.dumps({"ntasks": 8})})
    assert response.status_code == 201, response.content
    assert response.json()["sbatch"]["ntasks"] == 8


def test_a_replayed_key_with_other_sbatch_options_is_refused_naming_them(api, loaded):
    body = {"pipeline": "mpi-train", "sbatch": {"ntasks": 2}}
    assert post(api, body, HTTP_IDEMPOTENCY_KEY="k1").status_code == 201
    assert post(api, body, HTTP_IDEMPOTENCY_KEY="k1").status_code == 201  # replayed
    other = post(api, {**body, "sbatch": {"ntasks": 3}}, HTTP_IDEMPOTENCY_KEY="k1")
    assert other.status_code == 422
    assert "another sbatch" in other.json()["detail"]
    assert Process.objects.count() == 1


# --- refused at POST ------------------------------------------------------------------------------


@pytest.mark.parametrize("body, words", [
    ({"pipeline": "mpi-fixed", "sbatch": {"ntasks": 2}},
     "sbatch: pipeline mpi-fixed does not let a run set sbatch options (allow.sbatch in its "
     "file)."),
    ({"pipeline": "hello", "sbatch": {"ntasks": 2}},
     "sbatch: pipeline hello does not let a run set sbatch options"),
    ({"pipeline": "mpi-train", "sbatch": {"nodes": 2}},
     "sbatch.nodes: not allowed by pipeline mpi-train; it allows chdir, constraint, "
     "mail_type, mail_user, ntasks."),
    ({"pipeline": "mpi-train", "sbatch": {"constraint": "h100"}},
     "sbatch.constraint: h100 not among the features allowed (pool hpc's "
     "allow_sbatch.constraint: a100, v100, ib)."),
    ({"pipeline": "mpi-train", "sbatch": {"ntasks": 64}},
     "sbatch.ntasks: 64 is more than the 8 allowed (pool hpc's allow_sbatch.ntasks: 8)."),
    ({"pipeline": "mpi-train", "sbatch": {"mail_type": ["ALL"]}},
     "sbatch.mail_type: ALL not among the mail types allowed"),
    ({"pipeline": "mpi-train", "sbatch": {"mail_user": "eve@evil.example"}},
     "sbatch.mail_user: eve@evil.example matches none of the addresses allowed"),
    ({"pipeline": "mpi-train", "sbatch": {"chdir": "/etc"}},
     "sbatch.chdir: /etc is not (under) a directory allowed"),
    ({"pipeline": "mpi-train", "sbatch": {"chdir": "/shared/projects/../../etc"}},
     "sbatch.chdir: must be an absolute path"),
    ({"pipeline": "mpi-any", "sbatch": {"reservation": "maint"}},
     "sbatch.reservation: pool hpc's allow_sbatch lets no pipeline or run set reservation."),
    ({"pipeline": "mpi-any", "sbatch": {"export": ["PATH=/tmp/evil"]}},
     "sbatch.export: PATH not among the names allowed"),
    ({"pipeline": "mpi-any", "sbatch": {"export": ["ORCH_CONFIG_FILE=/etc/shadow"]}},
     "sbatch.export[0]: ORCH_CONFIG_FILE is reserved"),
    ({"pipeline": "mpi-train", "sbatch": {"constraint": "a100\n#SBATCH --uid=0"}},
     "sbatch.constraint: must be a feature expression"),
    ({"pipeline": "mpi-train", "sbatch": {"ntasks": "4; rm -rf /"}},
     "sbatch.ntasks: must be a whole number"),
    ({"pipeline": "mpi-train", "sbatch": {"wrap": "rm -rf /"}},
     "sbatch.wrap: not an sbatch option here"),
    ({"pipeline": "mpi-train", "sbatch": "--constraint=a100"}, "Not valid JSON"),
    ({"pipeline": "mpi-train", "sbatch": ["constraint"]}, "Must be a JSON object"),
])
def test_what_the_pool_or_pipeline_does_not_allow_is_a_400_naming_it_and_creates_nothing(
        api, loaded, body, words):
    response = post(api, body)
    assert response.status_code == 400, response.content
    errors = response.json()["fields"]
    assert list(errors) == ["sbatch"], errors
    assert words in " ".join(errors["sbatch"]), errors
    assert Process.objects.count() == 0


def test_a_rerun_past_a_list_narrowed_since_is_refused_naming_the_field(api, loaded, tmp_path):
    first = post(api, {"pipeline": "mpi-train", "sbatch": {"constraint": "v100"}})
    assert first.status_code == 201, first.content
    narrowed = HPC_POOL.replace("[a100, v100, ib]", "[a100, ib]")
    assert not pipelines_load(folder_with(tmp_path, {"pools/hpc.yaml": narrowed})).errors
    again = api.post(f"{PROCESSES}{first.json()['id']}/rerun/")
    assert again.status_code == 400, again.content
    assert "sbatch.constraint: v100 not among the features allowed" in \
        " ".join(again.json()["fields"]["sbatch"])
    assert Process.objects.count() == 1


# --- files refused when they load ---------------------------------------------------------------


@pytest.mark.parametrize("extra, words", [
    ("sbatch: {constraint: h100}\n",
     "sbatch.constraint: h100 not among the features allowed (pool hpc's "
     "allow_sbatch.constraint: a100, v100, ib)"),
    ("sbatch: {ntasks: 9}\n", "sbatch.ntasks: 9 is more than the 8 allowed"),
    ("sbatch: {reservation: maint}\n",
     "sbatch.reservation: pool hpc's allow_sbatch lets no pipeline or run set reservation"),
    ("sbatch: {chdir: /home/ada}\n", "sbatch.chdir: /home/ada is not (under) a directory"),
    ("sbatch: {mail_type: SOMETIMES}\n", "sbatch.mail_type: must be a list of NONE, BEGIN"),
    ("sbatch: {uid: 0}\n", "sbatch.uid: not an sbatch option here"),
    ("sbatch: --exclusive\n", "sbatch: must be a mapping of sbatch options"),
    ("allow: {sbatch: [reservation]}\n",
     "allow.sbatch: pool hpc's allow_sbatch lets no run set reservation"),
    ("allow: {sbatch: [uid]}\n", "allow.sbatch: uid not an sbatch option here"),
    ("allow: {sbatch: constraint}\n", "allow.sbatch: must be a list of sbatch options"),
])
def test_a_pipeline_asking_what_its_pool_does_not_allow_is_refused_naming_file_and_field(
        tmp_path, pipelines, extra, words):
    text = f"name: odd\ntarget: slurm\npool: hpc\nrun: {{command: [\"true\"]}}\n{extra}"
    report = pipelines_load(folder_with(tmp_path, {"pools/hpc.yaml": HPC_POOL,
                                                   "odd.yaml": text}))
    assert words in report.errors["odd.yaml"], report.errors
    assert "odd" not in report.loaded


@pytest.mark.parametrize("target, extra, file, words", [
    ("local", "sbatch: {ntasks: 2}\n", "odd.yaml",
     "sbatch: only the Slurm targets take sbatch options, not local"),
    ("local", "allow: {sbatch: true}\n", "odd.yaml",
     "allow.sbatch: only the Slurm targets take sbatch options, not local"),
])
def test_sbatch_options_on_another_target_are_refused(tmp_path, pipelines, target, extra,
                                                      file, words):
    text = (f"name: odd\ntarget: {target}\npool: {target}\nrun: {{command: [\"true\"]}}\n"
            f"{extra}")
    report = pipelines_load(folder_with(tmp_path, {"odd.yaml": text}))
    assert words in report.errors[file], report.errors


@pytest.mark.parametrize("pool, words", [
    ("target: slurm\nallow_sbatch: {constraint: a100}\n",
     "allow_sbatch.constraint: must be a list"),
    ("target: slurm\nallow_sbatch: {ntasks: [1, 2]}\n",
     "allow_sbatch.ntasks: must be a whole number"),
    ("target: slurm\nallow_sbatch: {export: [SLURM_JWT]}\n",
     "allow_sbatch.export[0]: SLURM_JWT is reserved"),
    ("target: slurm_rest\nsbatch: {gres: 'gpu:2'}\n",
     "sbatch.gres: GPUs are asked with resources.gpus, not gres"),
    ("target: slurm\nsbatch: {chdir: scratch}\n", "sbatch.chdir: must be an absolute path"),
    ("target: docker\nsbatch: {ntasks: 2}\n",
     "sbatch: only the Slurm targets take sbatch options, not docker"),
    ("target: local\nallow_sbatch: {ntasks: 2}\n",
     "allow_sbatch: only the Slurm targets take sbatch options, not local"),
])
def test_a_malformed_pool_file_is_refused_naming_its_field(tmp_path, pipelines, pool, words):
    text = f"name: odd\ncapacity: 2\nsettings: {{}}\n{pool}"
    report = pipelines_load(folder_with(tmp_path, {"pools/odd.yaml": text}))
    assert words in report.errors["pools/odd.yaml"], report.errors
