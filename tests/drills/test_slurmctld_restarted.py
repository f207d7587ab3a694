"""Drill 7: restart slurmctld while jobs run, on a private Slurm cluster.

- Kept state (a restart as an admin does it): slurmctld is down for a few seconds, jobs go on
  running on slurmd and keep their ids. Polls fail meanwhile and decide nothing, a stop asked
  then is carried out once it is back, runs posted then are submitted once it is back; every
  process ends as its job did.
- Lost state (the saved state wiped, as happened to seed 004): Slurm forgets every job, kills
  the running ones, and hands out ids from 1 again. Strangers' jobs then carry the ids our
  processes hold; none of them may be taken for ours. Each forgotten process ends LOST with its
  reason, after the grace period, and runs posted afterwards succeed.

Both Slurm targets, sbatch (``slurm``) and slurmrestd (``slurm_rest``), on 22.05; slurmrestd on
24.11 too, where the versions differ (v0.0.42, an unknown job is HTTP 404): about two minutes,
where both targets there would take four (the sbatch target's 24.11 commands are covered by
the executor contract and the end-to-end tests).
"""

from __future__ import annotations

import pytest

from tests.drills.harness import Expect
from tests.drills.infra import wait_for
from tests.drills.slurm_backend import PrivateSlurm, SlurmBackend
from workers.contract import State

pytestmark = [pytest.mark.drill, pytest.mark.e2e]

# (release, target): the private cluster of that release, driven through that target.
RUNS = pytest.mark.parametrize("cluster, target", [
    ("22.05", "slurm"), ("22.05", "slurm_rest"), ("24.11", "slurm_rest")],
    indirect=["cluster"], scope="module")
DOWN_S = 5


@pytest.fixture(scope="module")
def cluster(request):
    cluster = PrivateSlurm(request.param).start()
    yield cluster
    cluster.stop()


def job_ids(drill, ids: list[str]) -> dict[str, str]:
    """The Slurm job id in each process's handle (``<id>:orch-<process>:<epoch>``)."""
    return {pid: drill.api.get(f"/api/processes/{pid}/")["handle"].split(":")[0] for pid in ids}


@RUNS
def test_slurmctld_restarted_with_its_state(cluster, drill_for, record, target):
    backend = SlurmBackend(cluster, target)
    drill = drill_for(backend)
    drill.start()
    # The node has 2 CPUs: two run, the others wait in Slurm's queue across the restart.
    running = drill.submit(4, seconds=8)
    failing = drill.submit(1, seconds=4, exit_code=3)
    to_stop = drill.submit(1, seconds=120)
    before = running + failing + to_stop
    drill.wait_states(before, {State.SUBMITTED, State.RUNNING})
    wait_for(lambda: len(backend.starts()) >= 2, 30, "two jobs to start")
    held = job_ids(drill, before)

    restart = cluster.restart_ctld(down_s=DOWN_S)
    wait_for(lambda: not cluster.controller_up(), 30, "slurmctld to go down", interval=0.2)
    drill.api.post(f"/api/processes/{to_stop[0]}/stop/")
    during = drill.submit(2, seconds=1)  # sbatch fails until slurmctld is back: retried
    states = drill.states(before)
    assert not any(s in (State.FAILED, State.LOST) for s in states.values()), (
        f"a failed poll must decide nothing: {states}")
    assert restart.wait(timeout=120) == 0, restart.stderr.read()

    expected = {pid: Expect(State.SUCCEEDED, 0) for pid in running + during}
    expected.update({pid: Expect(State.FAILED, 3) for pid in failing})
    expected[to_stop[0]] = Expect(State.STOPPED, starts=(0, 1))
    summary = drill.check(expected)
    assert job_ids(drill, before) == held, "a restart with its state keeps every job id"
    summary["fault"] = f"{target} on Slurm {cluster.release}: slurmctld down {DOWN_S} s, state kept"
    record(summary)


@RUNS
def test_slurmctld_restarted_without_its_state_ids_reused(cluster, drill_for, record, target):
    backend = SlurmBackend(cluster, target)
    drill = drill_for(backend)
    drill.start()
    killed = drill.submit(2, seconds=120)  # the node's 2 CPUs
    drill.wait_states(killed, {State.RUNNING})
    wait_for(lambda: len(backend.starts()) == 2, 30, "both jobs to start")
    waiting = drill.submit(2, seconds=120)  # pending in Slurm's queue
    drill.wait_states(waiting, {State.SUBMITTED})
    held = job_ids(drill, killed + waiting)

    restart = cluster.restart_ctld(cold=True)
    assert restart.wait(timeout=120) == 0, restart.stderr.read()
    # Strangers' jobs take ids from 1 again, past every id our processes hold; each one
    # completes at once, so a mistaken match would turn a forgotten process SUCCEEDED.
    strangers = []
    while not strangers or int(strangers[-1]) < max(map(int, held.values())):
        strangers.append(cluster.run("sbatch", "--parsable", "--job-name=stranger",
                                     "--chdir=/tmp", "--output=/dev/null", "--wrap=true").strip())
    assert set(held.values()) <= set(strangers), (held, strangers)
    after = drill.submit(2, seconds=1)

    # A killed job is LOST, or FAILED when its batch script outlived the command long enough
    # to write the exit code of the kill; never anything a stranger's job did.
    expected = {pid: Expect(State.LOST, starts=(1,), also=(State.FAILED,)) for pid in killed}
    expected.update({pid: Expect(State.LOST, starts=(0,)) for pid in waiting})
    expected.update({pid: Expect(State.SUCCEEDED, 0) for pid in after})
    summary = drill.check(expected)
    for pid in killed + waiting:
        process = drill.api.get(f"/api/processes/{pid}/")
        if process["state"] == State.FAILED:
            assert process["exit_code"] > 128, process  # killed by a signal
            assert "killed by signal" in process["message"], process
        else:
            assert f"Slurm no longer knows job {held[pid]}" in process["message"], process
    summary["fault"] = (f"{target} on Slurm {cluster.release}: slurmctld state wiped, "
                        f"{len(strangers)} strangers' jobs "
                        f"reused ids {sorted(held.values(), key=int)}")
    record(summary)
