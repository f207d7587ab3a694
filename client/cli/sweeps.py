"""Many runs in one request: `orch sweep`, `orch sweep-status`, `orch sweep-stop`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

from .. import render
from ..configargs import build_config, parse_value, split_assignment
from .common import JsonOut, UsageError, app, client, complete_pipelines, out


@app.command()
def sweep(
    pipeline: Annotated[str, typer.Argument(help="The pipeline's name.", show_default=False,
                                            autocompletion=complete_pipelines)],
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", "-g", metavar="KEY=V1,V2,...",
        help="A parameter and its values (each JSON when it parses): one run per "
             "combination of every --grid. Repeat for several.")] = None,
    configs_file: Annotated[str | None, typer.Option(
        "--configs-file", help="A YAML or JSON list of configs: one run each.")] = None,
    config_values: Annotated[list[str] | None, typer.Option(
        "--config", "-c", metavar="KEY=VALUE",
        help="A value of the base config every run starts from.")] = None,
    config_file: Annotated[str | None, typer.Option(
        "--config-file", help="The base config as a YAML or JSON file.")] = None,
    team: Annotated[str | None, typer.Option(help="The team (slug) it runs for.")] = None,
    version: Annotated[int | None, typer.Option(help="A pipeline version.")] = None,
    priority: Annotated[int | None, typer.Option(help="-10..10 among your team's waiting "
                                                      "runs.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        help="The same key again answers the first sweep instead of starting another.")] = None,
    json_out: JsonOut = False,
) -> None:
    """Start many runs of PIPELINE in one request: `orch sweep train -g lr=0.1,0.01 -g
    seed=1,2,3` (6 runs)."""
    if bool(grid) == bool(configs_file):
        raise UsageError("give --grid (one or more) or --configs-file, not both")
    api = client()
    found = api.sweep(pipeline, grid=_grid(grid or []) if grid else None,
                      configs=_configs(configs_file) if configs_file else None,
                      base_config=build_config(config_values or [], config_file), team=team,
                      version=version, priority=priority, idempotency_key=idempotency_key)
    _show(found, json_out)


@app.command("sweep-status")
def sweep_status(
    sweep_id: Annotated[str, typer.Argument(help="The sweep's id.", show_default=False)],
    json_out: JsonOut = False,
) -> None:
    """A sweep's processes counted by state."""
    _show(client().sweep_get(sweep_id), json_out)


@app.command("sweep-stop")
def sweep_stop(
    sweep_id: Annotated[str, typer.Argument(help="The sweep's id.", show_default=False)],
    json_out: JsonOut = False,
) -> None:
    """Stop every process of a sweep that has not ended."""
    answer = client().sweep_stop(sweep_id)
    if json_out:
        render.print_json(answer)
    else:
        out.print(f"{answer['stopped']} stopped or stopping; {_counts(answer['counts'])}")


def _grid(values: list[str]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for value in values:
        key, text = split_assignment(value, "--grid")
        grid[key] = [parse_value(part) for part in text.split(",")]
    return grid


def _configs(name: str) -> list[dict[str, Any]]:
    try:
        text = Path(name).read_text()
        data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise UsageError(f"--configs-file {name}: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise UsageError(f"--configs-file {name}: must hold a list of objects")
    return data


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{state} {n}" for state, n in counts.items() if n) or "no processes"


def _show(found: dict[str, Any], json_out: bool) -> None:
    if json_out:
        render.print_json(found)
    else:
        out.print(f"{found['id']} {escape(found['pipeline'])} v{found['pipeline_version']} "
                  f"{found['size']} runs: {_counts(found['counts'])}")
