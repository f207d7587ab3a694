"""A sweep's runs, spelled out: a parameter grid to its combinations, and each run's config
merged over the sweep's base config. Pure functions of the request, no Django."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any


class GridError(ValueError):
    """A grid that names no runs: ``field`` says where (``grid.lr``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def grid_size(grid: dict[str, Any]) -> int:
    """How many runs ``grid`` names (the product of its lists' lengths); GridError naming the
    key whose value is no non-empty list."""
    if not grid:
        raise GridError("grid", "name at least one parameter, such as {\"lr\": [0.1, 0.01]}.")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise GridError(f"grid.{key}", "must be a non-empty list of values.")
    return math.prod(len(values) for values in grid.values())


def grid_points(grid: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every combination of ``grid``, the last key varying fastest: {"lr": [a, b], "seed":
    [1, 2]} -> {lr: a, seed: 1}, {lr: a, seed: 2}, {lr: b, seed: 1}, {lr: b, seed: 2}."""
    keys = list(grid)
    for values in itertools.product(*(grid[key] for key in keys)):
        yield dict(zip(keys, values, strict=True))


def grid_place(grid: dict[str, Any], index: int) -> dict[str, int]:
    """Which value of each key the combination number ``index`` takes: {"lr": 1, "seed": 0}."""
    place: dict[str, int] = {}
    for key in reversed(list(grid)):
        index, place[key] = divmod(index, len(grid[key]))
    return dict(reversed(list(place.items())))
