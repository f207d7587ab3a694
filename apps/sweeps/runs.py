"""A sweep's runs: each one's config (the pipeline's defaults, then the base config, then the
run's own values), and the check of all of them against the pipeline's schema and the team's
datasets before anything is created."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
from django.core.exceptions import ValidationError

from apps.datasets.config_fields import DATASET_FORMAT, DatasetRef, dataset_refs
from apps.datasets.refs import _dataset_id, _not_found, _present
from apps.sweeps.expand import grid_place, grid_points

# Refused runs named in one answer at most: enough to see a pattern, not a 10,000-line body.
MAX_NAMED = 10


@dataclass(frozen=True)
class Runs:
    """The runs a sweep asks for: ``configs`` (a list) or ``grid`` (a mapping of lists), each
    merged over ``base`` (the base config already merged over the pipeline's defaults)."""

    base: dict[str, Any]
    configs: list[dict[str, Any]] | None = None
    grid: dict[str, list[Any]] | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        items = self.configs if self.configs is not None else grid_points(self.grid or {})
        for item in items:
            yield merged_over(self.base, item)

    def where(self, index: int, path: list) -> str:
        """How an error names run ``index``'s problem at ``path`` of its config: the grid's
        key and value (``grid.lr[1]``) when the grid put the value there, else the run
        (``configs[17]``, ``grid[17]``)."""
        if self.grid is None:
            return f"configs[{index}]"
        if path and path[0] in self.grid:
            return f"grid.{path[0]}[{grid_place(self.grid, index)[path[0]]}]"
        return f"grid[{index}]"


def merged_over(base: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """``item`` over ``base`` as merge_config merges them (nested mappings key by key), without
    copying what the two do not both hold: a run's config is only read (checked, then
    written to the database), so runs may share the base's values, and 10,000 deep copies
    of it are not made."""
    merged = dict(base)
    for key, value in item.items():
        under = merged.get(key)
        merged[key] = merged_over(under, value) if isinstance(value, dict) and isinstance(
            under, dict) else value
    return merged


def runs_check(runs: Runs, schema: dict[str, Any], team) -> list[list[DatasetRef]]:
    """Check every run against ``schema`` (its validator compiled once; each distinct config
    validated once) and the datasets it names against ``team``'s. Returns each run's dataset
    references; raises ValidationError naming the refused runs (``configs[17]``)."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    names_datasets = DATASET_FORMAT in json.dumps(schema)  # else no run can name one
    distinct = runs.grid is not None  # a grid's runs differ by definition: no need to look
    refused: dict[str, list[str]] = {}
    seen: set[str] = set()
    refs: list[list[DatasetRef]] = []
    for index, config in enumerate(runs):
        refs.append(dataset_refs(schema, config) if names_datasets else [])
        if len(refused) >= MAX_NAMED:
            continue
        if not distinct:
            text = json.dumps(config, sort_keys=True)
            if text in seen:
                continue
            seen.add(text)
        for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
            path = list(error.absolute_path)
            where = runs.where(index, path)
            field = ".".join(["used_config", *map(str, path)])
            refused.setdefault(where, []).append(f"{where}: {field}: {error.message}")
    if not refused:
        refused = _missing_datasets(runs, refs, team)
    if refused:
        raise ValidationError(refused)
    return refs


def _missing_datasets(runs: Runs, refs: list[list[DatasetRef]], team) -> dict[str, list[str]]:
    """The runs that name a dataset that is not a present one of ``team`` (one query)."""
    ids = {found for run in refs for ref in run if (found := _dataset_id(ref.value))}
    present = set(_present(team, ids).values_list("pk", flat=True)) if ids else set()
    refused: dict[str, list[str]] = {}
    for index, run in enumerate(refs):
        for ref in run:
            if _dataset_id(ref.value) not in present and len(refused) < MAX_NAMED:
                path = [part for part in ref.field.split(".")[1:]]
                where = runs.where(index, path)
                refused.setdefault(where, []).append(f"{where}: {_not_found(ref)}")
    return refused
