"""A sweep's runs spelled out (apps.sweeps.expand, apps.sweeps.runs): pure functions, no
database."""

from __future__ import annotations

import pytest

from apps.processes.services import merge_config
from apps.sweeps.expand import GridError, grid_place, grid_points, grid_size
from apps.sweeps.runs import Runs, merged_over

GRID = {"lr": [0.1, 0.01], "seed": [1, 2, 3]}


def test_a_grid_names_every_combination_the_last_key_fastest():
    assert grid_size(GRID) == 6
    assert list(grid_points(GRID)) == [
        {"lr": 0.1, "seed": 1}, {"lr": 0.1, "seed": 2}, {"lr": 0.1, "seed": 3},
        {"lr": 0.01, "seed": 1}, {"lr": 0.01, "seed": 2}, {"lr": 0.01, "seed": 3}]


def test_a_combinations_place_names_the_value_of_each_key():
    for index, point in enumerate(grid_points(GRID)):
        place = grid_place(GRID, index)
        assert {key: GRID[key][i] for key, i in place.items()} == point


@pytest.mark.parametrize("grid, field", [
    ({}, "grid"), ({"lr": []}, "grid.lr"), ({"lr": [1], "seed": 3}, "grid.seed"),
    ({"lr": {"a": 1}}, "grid.lr")])
def test_a_grid_that_names_no_runs_is_refused_by_its_key(grid, field):
    with pytest.raises(GridError) as refused:
        grid_size(grid)
    assert refused.value.field == field


@pytest.mark.parametrize("base, item", [
    ({"a": 1, "opt": {"lr": 0.1, "m": 0.9}}, {"opt": {"lr": 0.2}, "b": [1]}),
    ({"a": {"b": {"c": 1}}}, {"a": {"b": {"d": 2}, "e": 3}}),
    ({"a": {"b": 1}}, {"a": 5}),
    ({"a": 1}, {"a": {"b": 2}}),
])
def test_a_runs_config_merges_as_a_single_runs_does(base, item):
    assert merged_over(base, item) == merge_config(base, item)


def test_runs_share_the_base_but_never_change_it():
    base = {"opt": {"lr": 0.1}, "name": "x"}
    runs = list(Runs(base, grid={"opt": [{"lr": 0.2}, {"m": 1}]}))
    assert runs == [{"opt": {"lr": 0.2}, "name": "x"}, {"opt": {"lr": 0.1, "m": 1}, "name": "x"}]
    assert base == {"opt": {"lr": 0.1}, "name": "x"}
    assert Runs(base, grid=GRID).where(4, ["seed"]) == "grid.seed[1]"
    assert Runs(base, grid=GRID).where(4, ["name"]) == "grid[4]"
    assert Runs(base, configs=[{}]).where(0, ["name"]) == "configs[0]"
