"""Starting runs: `orch pipelines`, `orch run`, `orch rerun`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from .. import render
from ..api import Client
from ..configargs import build_config, set_path, split_assignment
from ..errors import ApiError
from .common import (
    JsonOut,
    ProcessId,
    Timeout,
    UsageError,
    advance,
    app,
    client,
    complete_pipelines,
    err,
    exit_for,
    out,
    print_logs,
    progress,
    say_retries,
    show,
    summary,
)


@app.command()
def pipelines(
    name: Annotated[str | None, typer.Argument(help="One pipeline, in detail.",
                                               autocompletion=complete_pipelines)] = None,
    json_out: JsonOut = False,
) -> None:
    """The pipelines you may run; with NAME, its config fields, defaults and versions."""
    api = client()
    if name is None:
        listed = api.pipelines()
        if json_out:
            render.print_json(listed)
        else:
            show(render.pipelines_table(listed))
        return
    pipeline = api.pipeline(name)
    if json_out:
        render.print_json(pipeline)
    else:
        show(render.pipeline_detail(pipeline))


@app.command()
def run(
    pipeline: Annotated[str, typer.Argument(help="The pipeline's name.", show_default=False,
                                            autocompletion=complete_pipelines)],
    config_values: Annotated[list[str] | None, typer.Option(
        "--config", "-c", metavar="KEY=VALUE",
        help="A config value (JSON when it parses: 3, true, [1,2]; else a string); a.b=1 "
             "sets b inside a. Repeat for several.")] = None,
    config_file: Annotated[str | None, typer.Option(
        "--config-file", help="The config as a YAML or JSON file (- : standard input); "
                                    "-c values go over it.")] = None,
    datasets: Annotated[list[str] | None, typer.Option(
        "--dataset", "-d", metavar="FIELD=PATH-or-ID",
        help="A dataset for a config field: a file (uploaded first) or a dataset id.")] = None,
    secrets: Annotated[list[str] | None, typer.Option(
        "--secret", "-s", metavar="NAME[=VALUE]",
        help="A secret the pipeline declares; without =VALUE, read from the environment "
             "variable NAME (keeps it out of your shell history).")] = None,
    team: Annotated[str | None, typer.Option(help="The team (slug) it runs for.")] = None,
    version: Annotated[int | None, typer.Option(help="A pipeline version (default: the "
                                                     "latest not withdrawn).")] = None,
    priority: Annotated[int | None, typer.Option(help="-10..10 among your team's waiting "
                                                      "runs.")] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Wait for the end, with a live "
                                       "status line; exit 0 only if it SUCCEEDED.")] = False,
    follow: Annotated[bool, typer.Option("--follow", help="Wait, printing its output as it "
                                         "comes; exit 0 only if it SUCCEEDED.")] = False,
    timeout: Timeout = None,
    idempotency_key: Annotated[str | None, typer.Option(
        help="The same key again answers the first run instead of starting another.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print the id alone.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Start a run of PIPELINE: `orch run sleep -c seconds=30 --wait`."""
    api = client()
    body = build_config(config_values or [], config_file)
    for assignment in datasets or []:
        field, value = split_assignment(assignment, "--dataset")
        set_path(body, field, _dataset_id(api, value, team, json_out or quiet), "--dataset")
    process = api.run(pipeline, body, team=team, version=version,
                      secrets=_secrets(secrets or []), priority=priority,
                      idempotency_key=idempotency_key, retry=wait or follow)
    _started(api, process, wait=wait, follow=follow, timeout=timeout, quiet=quiet,
             json_out=json_out)


def _dataset_id(api: Client, value: str, team: str | None, quiet: bool) -> str:
    """A file's new dataset id (uploaded now, for ``team``), or ``value`` as a dataset id."""
    path = Path(value).expanduser()
    if not path.is_file():
        return value
    with progress(quiet) as bar:
        task = bar.add_task(f"upload {path.name}", total=path.stat().st_size)
        dataset = api.upload(path, team=team, progress=advance(bar, task))
    return str(dataset["id"])


def _secrets(values: list[str]) -> dict[str, str] | None:
    secrets = {}
    for value in values:
        name, sep, given = value.partition("=")
        if not sep:
            if name not in os.environ:
                raise UsageError(f"--secret {name}: no environment variable {name}; "
                                 f"give --secret {name}=VALUE or export it")
            given = os.environ[name]
        secrets[name] = given
    return secrets or None


def _started(api: Client, process: dict[str, Any], *, wait: bool, follow: bool,
             timeout: float | None, quiet: bool, json_out: bool) -> None:
    """What `run` and `rerun` do with the new process: show it, or wait for its end."""
    if not (wait or follow):
        if json_out:
            render.print_json(process)
        elif quiet:
            out.print(process["id"])
        else:
            out.print(f"{process['id']} {escape(process['pipeline'])} "
                      f"v{process['pipeline_version']} [bold]{process['state']}[/]")
        return
    say_retries(api)
    if follow:
        print_logs(api, process["id"], follow=True, json_out=False)
        ended = api.wait(process["id"], timeout)
    else:
        ended = _wait_with_status(api, process, timeout, quiet or json_out)
    if json_out:
        render.print_json(ended)
    elif quiet:
        out.print(ended["id"])
    else:
        (err if follow else out).print(summary(ended))
    exit_for(ended)


def _wait_with_status(api: Client, process: dict[str, Any], timeout: float | None,
                      quiet: bool) -> dict[str, Any]:
    started = time.monotonic()
    label = f"{render.short(process['id'])} {process['pipeline']}"
    if quiet or not err.is_terminal:
        return api.wait(process["id"], timeout)
    with err.status(f"{escape(label)} {process['state']}") as line:
        def seen(status: dict[str, Any]) -> None:
            waited = render.span(time.monotonic() - started)
            line.update(f"{escape(label)} [bold]{status['state']}[/] ({waited})")

        def retrying(error: ApiError, wait: float) -> None:
            line.update(f"{escape(label)}: {escape(str(error))}; retrying in {wait:.1f} s")

        api.http.on_retry = retrying
        return api.wait(process["id"], timeout, on_state=seen)


@app.command()
def rerun(
    process_id: ProcessId,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Wait for its end.")] = False,
    follow: Annotated[bool, typer.Option("--follow", help="Wait, printing its output.")] = False,
    timeout: Timeout = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print the id alone.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Run a process again: the same pipeline version, config, secrets and team."""
    api = client()
    process = api.rerun(process_id)
    _started(api, process, wait=wait, follow=follow, timeout=timeout, quiet=quiet,
             json_out=json_out)
