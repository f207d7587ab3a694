"""Data in and results out: `orch upload`, `orch datasets`, `orch outputs`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from .. import render
from .common import (
    JsonOut,
    ProcessId,
    advance,
    app,
    client,
    out,
    progress,
    show,
)


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="The file.", show_default=False)],
    name: Annotated[str | None, typer.Option(help="Default: the file's name.")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    team: Annotated[str | None, typer.Option(help="The team (slug) it is for; needed when "
                                                  "you are in several.")] = None,
    json_out: JsonOut = False,
) -> None:
    """Upload a file as a dataset (streamed, with a progress bar); prints its id."""
    api = client()
    with progress(json_out) as bar:
        task = bar.add_task(f"upload {file.name}", total=file.stat().st_size)
        dataset = api.upload(file, name=name, description=description, team=team,
                             progress=advance(bar, task))
    if json_out:
        render.print_json(dataset)
    else:
        out.print(f"{dataset['id']} {escape(dataset.get('name') or file.name)} "
                  f"{render.size(dataset.get('size'))} sha256 {dataset.get('sha256', '')}")


@app.command()
def datasets(
    name: Annotated[str | None, typer.Option(help="Only datasets of this name.")] = None,
    json_out: JsonOut = False,
) -> None:
    """The datasets you may use."""
    listed = list(client().datasets(name=name))
    if json_out:
        render.print_json(listed)
    else:
        show(render.datasets_table(listed))


@app.command()
def outputs(
    process_id: ProcessId,
    download: Annotated[Path | None, typer.Option(
        "--download", file_okay=False, help="Download every output into this folder.")] = None,
    json_out: JsonOut = False,
) -> None:
    """The files a process wrote; with --download DIR, fetch them."""
    api = client()
    pid = api.full_id(process_id)
    files = api.outputs(pid)
    written = []
    if download is not None:
        with progress(json_out) as bar:
            for item in files:
                task = bar.add_task(item["path"], total=item.get("size"))
                written.append(str(api.download_output(pid, item["path"], download,
                                                       progress=advance(bar, task))))
    if json_out:
        render.print_json([{**item, **({"file": written[i]} if written else {})}
                           for i, item in enumerate(files)])
    elif download is None:
        show(render.outputs_table(files))
    else:
        for path in written:
            out.print(escape(path))
