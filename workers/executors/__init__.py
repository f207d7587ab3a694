"""The registry of executors: each target of ``contract.TARGET_TABLE`` to the dotted path of
its executor (named in its table entry), imported lazily so a worker loads only the SDK its own
target needs. The control plane reads the targets from the contract and never imports this
package."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ..contract import TARGET_TABLE

if TYPE_CHECKING:
    from .base import Executor

# Relative to this package: it is `workers.executors` in a checkout and
# `orchestration_worker.executors` once installed.
EXECUTORS: dict[str, str] = {target.name: f"{__name__}.{target.executor}"
                             for target in TARGET_TABLE}


def executor_class(target: str) -> type[Executor]:
    try:
        dotted = EXECUTORS[target]
    except KeyError:
        raise ValueError(f"unknown target {target!r}; known: {', '.join(EXECUTORS)}") from None
    module, _, name = dotted.rpartition(".")
    return getattr(import_module(module), name)


# The settings each pool's messages last carried: the heartbeat asks the executor of its pool
# about its cluster with them, once a message has told them.
_LAST_SETTINGS: dict[str, dict[str, Any]] = {}


def get_executor(target: str, pool: str, settings: dict[str, Any] | None = None) -> Executor:
    _LAST_SETTINGS[pool] = dict(settings or {})
    return executor_class(target)(pool, settings)


def last_settings(pool: str) -> dict[str, Any] | None:
    """The settings of ``pool``'s last message; None before its first."""
    return _LAST_SETTINGS.get(pool)
