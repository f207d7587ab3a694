"""Pools and teams: `orch pools`, `orch queue`, `orch teams`."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import render
from .common import (
    JsonOut,
    app,
    client,
    show,
)


@app.command()
def pools(json_out: JsonOut = False) -> None:
    """Pools: target, live workers, capacity, running, waiting, paused."""
    listed = client().pools()
    if json_out:
        render.print_json(listed)
    else:
        show(render.pools_table(listed))


@app.command()
def queue(
    pool: Annotated[str, typer.Argument(help="The pool's name.", show_default=False)],
    json_out: JsonOut = False,
) -> None:
    """A pool's waiting processes, in the order admission takes them."""
    entries = list(client().pool_queue(pool))
    if json_out:
        render.print_json(entries)
    else:
        show(render.queue_table(entries))


@app.command()
def teams(
    slug: Annotated[str | None, typer.Argument(help="One team, with its members and "
                                                    "clients.")] = None,
    json_out: JsonOut = False,
) -> None:
    """Your teams and your role in each."""
    api = client()
    if slug is not None:
        team = api.team(slug)
        if json_out:
            render.print_json(team)
        else:
            show(render.team_detail(team))
        return
    listed = api.teams()
    if json_out:
        render.print_json(listed)
    else:
        show(render.teams_table(listed))
