"""Watching and stopping runs: `orch ps`, `status`, `logs`, `events`, `stop`."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape

from .. import render
from ..errors import ApiError
from .common import (
    JsonOut,
    ProcessId,
    app,
    client,
    complete_processes,
    err,
    exit_for,
    out,
    print_logs,
    say_retries,
    show,
    summary,
)


@app.command()
def ps(
    state: Annotated[list[str] | None, typer.Option(
        "--state", help="Only processes in this state (repeat for several).")] = None,
    pipeline: Annotated[str | None, typer.Option(help="Only runs of this pipeline.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1,
                                       help="Show the newest N.")] = 20,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh every 2 s until "
                                        "Ctrl-C.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Your processes, newest first: id, pipeline, state, age, duration, pool, team."""
    api = client()
    states = [s.upper() for s in state] if state else None

    def listed() -> list[dict[str, Any]]:
        return list(api.ps(state=states, pipeline=pipeline, limit=limit))

    if json_out:
        render.print_json(listed())
        return
    if not watch:
        show(render.process_table(listed()))
        return
    say_retries(api)
    try:
        with Live(render.process_table(listed()), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(2)
                live.update(render.process_table(
                    api.http.retrying(listed, api.retry_for)), refresh=True)
    except KeyboardInterrupt:
        return


@app.command()
def status(process_id: ProcessId, json_out: JsonOut = False) -> None:
    """One process: its state, exit code, message, config, times, where it runs."""
    process = client().get(process_id)
    if json_out:
        render.print_json(process)
    else:
        show(render.process_detail(process))


@app.command()
def logs(
    process_id: ProcessId,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Follow new output until the "
                                         "process ends; exit 0 only if it SUCCEEDED.")] = False,
    offset: Annotated[int, typer.Option(min=0, help="From this byte on.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Each chunk the API answers, as a "
                                           "JSON line.")] = False,
) -> None:
    """A process's output (kept by the server after the job is gone)."""
    api = client()
    pid = api.full_id(process_id)
    if follow:
        say_retries(api)
    print_logs(api, pid, follow=follow, json_out=json_out, offset=offset)
    if follow:
        ended = api.wait(pid)
        if ended["state"] != "SUCCEEDED":
            err.print(summary(ended))
        exit_for(ended)


@app.command()
def events(process_id: ProcessId, json_out: JsonOut = False) -> None:
    """Every transition of a process: when, from, to, who said so, why."""
    history = client().events(process_id)
    if json_out:
        render.print_json(history)
    else:
        show(render.events_table(history))


@app.command()
def stop(
    process_ids: Annotated[list[str], typer.Argument(help="Process ids or unique prefixes.",
                                                     show_default=False,
                                                     autocompletion=complete_processes)],
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Wait until each has "
                                       "ended.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Stop processes (STOPPING, then STOPPED); a finished one is left as it is. Each id is
    tried; the exit code is the first failure's."""
    api = client()
    answers, failed = [], None
    for given in process_ids:
        try:
            answer = api.stop(given)
            if wait:
                answer = api.wait(answer["id"])
        except ApiError as exc:
            err.print(f"orch: {escape(given)}: {escape(str(exc))}")
            failed = failed or exc
            continue
        answers.append(answer)
        if not json_out:
            out.print(f"{answer['id']} {render.state_text(answer['state']).markup}")
    if json_out:
        render.print_json(answers)
    if failed is not None:
        raise typer.Exit(failed.exit_code)
