"""The Slurm modules' tests run on both real clusters, 22.05 and 24.11, where they are marked
``both_slurm_clusters`` (the executor contract, and what proves the versions' differences);
the rest on 22.05 only, so the second cluster adds minutes, not the whole module again."""

from __future__ import annotations

import pytest

from tests.executors.slurm_contract import CLUSTERS, use


def pytest_generate_tests(metafunc):
    if "slurm_cluster" not in metafunc.fixturenames:
        return
    both = metafunc.definition.get_closest_marker("both_slurm_clusters") is not None
    releases = list(CLUSTERS) if both else ["22.05"]
    if "slurm_target" in metafunc.fixturenames:
        # A test of both targets: sbatch, and slurmrestd on each API version the cluster's
        # daemon serves ("slurm_rest v0.0.40"): each version's table meets a real daemon.
        cases = [(release, target) for release in releases
                 for target in ("slurm", *(f"slurm_rest {version}"
                                           for version in CLUSTERS[release].rest_api_versions))]
        metafunc.parametrize(("slurm_cluster", "slurm_target"), cases, indirect=["slurm_cluster"],
                             scope="module", ids=[f"{r}-{t.replace(' ', '-')}" for r, t in cases])
    else:
        metafunc.parametrize("slurm_cluster", releases, indirect=True, scope="module")


@pytest.fixture(scope="module")
def slurm_cluster(request):
    """The cluster this module's tests use now (see slurm_contract.current)."""
    cluster = CLUSTERS[request.param]
    use(cluster)
    yield cluster
    use(CLUSTERS["22.05"])
