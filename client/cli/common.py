"""What every ``orch`` command shares: the Typer app, the consoles, option types, the
client of `orch login`'s credentials, progress bars and how a run's end is told."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .. import render
from ..api import Client
from ..errors import EXIT_RUN_FAILED, ApiError

app = typer.Typer(
    name="orch",
    help="Run and watch pipelines of an orchestration server. Start with `orch login`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # errors are one line (main), never a traceback
    rich_markup_mode="markdown",
)


def _console(*, stderr: bool) -> Console:
    """A console; one that is not a terminal (a pipe, a file) is wide, so that tables are
    not wrapped at 80 columns (COLUMNS, when set, still decides)."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, highlight=False, width=NOT_A_TERMINAL_WIDTH if wide else None,
                   soft_wrap=stderr)


NOT_A_TERMINAL_WIDTH = 200
out = _console(stderr=False)
err = _console(stderr=True)


def show(renderable: Any) -> None:
    """A table (or any renderable) on standard output; in a pipe or a file, without the
    blanks that pad its last column."""
    if out.is_terminal:
        out.print(renderable)
        return
    with out.capture() as captured:
        out.print(renderable)
    print("\n".join(line.rstrip() for line in captured.get().splitlines()), flush=True)

def complete_pipelines(incomplete: str) -> list[str]:
    """Shell completion: the names of the pipelines the server offers (none when it cannot
    be asked)."""
    try:
        return [p["name"] for p in client().pipelines() if p["name"].startswith(incomplete)]
    except ApiError:
        return []


def complete_processes(incomplete: str) -> list[str]:
    """Shell completion: the short ids of your newest processes."""
    try:
        ids = [render.short(p["id"]) for p in client().ps(limit=50)]
    except ApiError:
        return []
    return [i for i in ids if i.startswith(incomplete.lower())]


JsonOut = Annotated[bool, typer.Option("--json", help="Print the API's answer as JSON.")]
ProcessId = Annotated[str, typer.Argument(help="A process id, or a unique prefix of it "
                                               "(4 hex digits or more).", show_default=False,
                                          autocompletion=complete_processes)]
Timeout = Annotated[float | None, typer.Option(help="Give up waiting after this many seconds "
                                                    "(exit 7).", show_default=False)]


class UsageError(Exception):
    """A command line that cannot be carried out as given (exit 2)."""


def client() -> Client:
    """The client of `orch login`'s credentials (the environment's over them)."""
    return Client.from_login()


def say_retries(api: Client) -> None:
    """Tell of each retry on standard error, so a wait that seems stuck says why."""
    def told(error: ApiError, wait: float) -> None:
        err.print(f"orch: {escape(str(error))}; retrying in {wait:.1f} s", style="yellow")

    api.http.on_retry = told


def _version(shown: bool) -> None:
    if shown:
        try:
            number = version("orchestration-service")
        except PackageNotFoundError:
            number = "unknown"
        out.print(f"orch {number} (orchestration-service)")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False,
) -> None:
    """Run and watch pipelines of an orchestration server. Start with `orch login`."""


def summary(process: dict[str, Any]) -> str:
    line = (f"{process['id']} {render.state_text(process['state']).markup} "
            f"after {render.duration(process)}")
    if process.get("exit_code") is not None:
        line += f" (exit {process['exit_code']})"
    if process.get("message"):
        line += f": {escape(process['message'])}"
    return line


def exit_for(process: dict[str, Any]) -> None:
    if process["state"] != "SUCCEEDED":
        raise typer.Exit(EXIT_RUN_FAILED)


def print_logs(api: Client, pid: str, *, follow: bool, json_out: bool,
                offset: int = 0) -> None:
    for chunk in api.log_chunks(pid, follow, offset=offset):
        if json_out:
            print(json.dumps(chunk, ensure_ascii=False), flush=True)
            continue
        if chunk.get("skipped"):
            err.print(f"[... {chunk['skipped']} bytes dropped by the log cap ...]",
                      style="yellow")
        sys.stdout.write(chunk["text"])
        sys.stdout.flush()


def advance(bar: Progress, task: TaskID) -> Callable[[int, int | None], None]:
    return lambda done, _total: bar.update(task, completed=done)


@contextmanager
def progress(quiet: bool) -> Iterator[Progress]:
    """A progress bar on standard error (none when quiet or not a terminal)."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn(), console=err,
                   disable=quiet or not err.is_terminal)
    with bar:
        yield bar
