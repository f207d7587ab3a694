"""``orch``: the orchestration API from a terminal. Every command takes ``--json`` (the API's
answer, for scripts), ids by a unique prefix, and ends with one line on an error and an exit
code that says what went wrong (:mod:`..errors`; docs/cli.md lists them).

Each module of this package registers its commands on the one Typer app of :mod:`.common`."""

from __future__ import annotations

import os
import sys
from importlib import import_module

from ..configargs import ConfigArgError
from ..errors import EXIT_USAGE, ApiError
from .common import UsageError, app

# Each registers its commands on the app when imported, in the order `orch --help` lists them.
for _module in ("session", "runs", "sweeps", "watch", "pools", "data"):
    import_module(f"{__name__}.{_module}")

__all__ = ["app", "main"]


def main() -> None:
    """`orch`: errors end as one line and an exit code, never a traceback (ORCH_DEBUG=1
    shows it)."""
    try:
        app(prog_name="orch")
    except ApiError as exc:
        _fail(str(exc), exc.exit_code)
    except (ConfigArgError, UsageError) as exc:
        _fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug of orch's own: still one line, unless asked for more
        if os.environ.get("ORCH_DEBUG"):
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (ORCH_DEBUG=1 shows where)", 70)


def _fail(message: str, code: int) -> None:
    print(f"orch: {' '.join(message.split())}", file=sys.stderr, flush=True)
    sys.exit(code)
