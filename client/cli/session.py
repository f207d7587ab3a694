"""`orch login` and `orch logout`: the credentials kept in the user's config dir."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

from .. import config, render
from ..api import Client
from .common import (
    JsonOut,
    UsageError,
    app,
    out,
)


@app.command()
def login(
    url: Annotated[str | None, typer.Option(help="The server, e.g. http://127.0.0.1:8000 "
                                                 "(default: $ORCH_URL, else asked).")] = None,
    client_id: Annotated[str | None, typer.Option(help="Default: $ORCH_CLIENT_ID, else "
                                                       "asked.")] = None,
    secret_stdin: Annotated[bool, typer.Option(help="Read the secret from standard input "
                                                    "(default: $ORCH_CLIENT_SECRET, else "
                                                    "asked, hidden).")] = False,
    json_out: JsonOut = False,
) -> None:
    """Check a client's id and secret against the server and keep them (and its token) in
    the config dir, readable by you alone."""
    url = url or os.environ.get(config.ENV_URL) or _ask("Server URL", "http://127.0.0.1:8000")
    client_id = client_id or os.environ.get(config.ENV_CLIENT_ID) or _ask("Client id")
    if secret_stdin:
        secret = sys.stdin.readline().strip()
    else:
        secret = os.environ.get(config.ENV_SECRET) or _ask("Client secret", hidden=True)
    api = Client(url, client_id, secret)
    token = api.token()  # a wrong URL, id or secret ends here, and nothing is kept
    path = config.save(config.Credentials(api.url, client_id, secret, token))
    if json_out:
        render.print_json({"url": api.url, "client_id": client_id, "config_file": str(path),
                           "token_expires_at": token.expires_at})
        return
    out.print(f"Logged in to {escape(api.url)} as client {escape(client_id)}; credentials "
              f"kept in {escape(str(path))} (mode 0600).")


def _ask(prompt: str, default: str | None = None, *, hidden: bool = False) -> str:
    if not sys.stdin.isatty():
        raise UsageError(f"{prompt.lower()} missing: give it as an option or in the "
                         "environment (ORCH_URL, ORCH_CLIENT_ID, ORCH_CLIENT_SECRET)")
    return typer.prompt(prompt, default=default, hide_input=hidden).strip()


@app.command()
def logout(json_out: JsonOut = False) -> None:
    """Forget the credentials `orch login` kept."""
    path = config.credentials_path()
    existed = path.exists()
    path.unlink(missing_ok=True)
    if json_out:
        render.print_json({"config_file": str(path), "removed": existed})
    else:
        out.print(f"Removed {escape(str(path))}." if existed else "Not logged in.")
