"""A run's config from the command line: ``-c key=value`` (the value read as JSON when it is
JSON: ``3``, ``true``, ``[1, 2]``, ``{"a": 1}``; else taken as a string; ``a.b=1`` sets a key
inside ``a``) over a ``--config-file`` in YAML or JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


class ConfigArgError(ValueError):
    """A -c, --config-file or --dataset that cannot be read: the message says which."""


def parse_value(text: str) -> Any:
    """``text`` as JSON when it is a JSON value (NaN and Infinity are not), else as is."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except ValueError:
        return text


def _not_json(constant: str) -> Any:
    raise ValueError(constant)


def split_assignment(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigArgError(f"{option} {text!r}: expected KEY=VALUE")
    return key.strip(), value


def set_path(config: dict[str, Any], dotted: str, value: Any, option: str = "-c") -> None:
    """``config[a][b] = value`` for ``dotted`` ``a.b``, making the objects on the way."""
    keys = dotted.split(".")
    if any(not key for key in keys):
        raise ConfigArgError(f"{option} {dotted!r}: an empty key between dots")
    node = config
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            where = ".".join(keys[:depth + 1])
            raise ConfigArgError(f"{option} {dotted!r}: {where} is already set to {child!r}, "
                                 "not an object")
        node = child
    node[keys[-1]] = value


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` on top, objects merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def read_config_file(name: str) -> dict[str, Any]:
    """The object in the file ``name`` (``-``: standard input), YAML or JSON."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
    except OSError as exc:
        raise ConfigArgError(f"--config-file {name}: {exc.strerror}") from exc
    try:
        # JSON is YAML, but a .json file gets JSON's own error messages.
        data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigArgError(f"--config-file {name}: not valid YAML or JSON: {first}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigArgError(f"--config-file {name}: must hold an object (key: value), "
                             f"not {type(data).__name__}")
    return data


def build_config(assignments: list[str], config_file: str | None = None) -> dict[str, Any]:
    """The config of ``--config-file`` with each ``-c KEY=VALUE`` set over it, in order."""
    config = read_config_file(config_file) if config_file else {}
    sets: dict[str, Any] = {}
    for assignment in assignments:
        key, value = split_assignment(assignment, "-c")
        set_path(sets, key, parse_value(value))
    return merged(config, sets)
