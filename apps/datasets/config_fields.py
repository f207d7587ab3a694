"""The fields of a config that name datasets: those a pipeline's schema marks
``"format": "dataset"`` (a string, or an array of strings). Pure functions of the schema and
the config, no Django: the pipeline loader uses them too."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

DATASET_FORMAT = "dataset"
PLACEHOLDER = str(uuid.UUID(int=0))


@dataclass(frozen=True)
class DatasetRef:
    """One config value naming a dataset."""

    pointer: str  # JSON pointer (RFC 6901) of the value in the config: "/input", "/files/1"
    field: str  # how errors and the API name it: "used_config.files.1"
    value: Any  # what the config holds there: a dataset's id, if the caller got it right


def dataset_refs(schema: Any, config: Any) -> list[DatasetRef]:
    """Every value of ``config`` that ``schema`` marks as a dataset, in the config's order."""
    return list(_walk(schema, config, []))


def _walk(schema: Any, value: Any, path: list[str | int]) -> Iterator[DatasetRef]:
    if not isinstance(schema, dict):
        return
    if schema.get("format") == DATASET_FORMAT and not isinstance(value, dict | list):
        yield DatasetRef(pointer="".join(f"/{_escaped(part)}" for part in path),
                         field=".".join(["used_config", *map(str, path)]), value=value)
        return
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                yield from _walk(sub, value[name], [*path, name])
    elif isinstance(value, list):
        items, prefix = schema.get("items"), schema.get("prefixItems") or []
        for index, item in enumerate(value):
            sub = prefix[index] if index < len(prefix) else items
            yield from _walk(sub, item, [*path, index])


def _escaped(part: str | int) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def field_of(pointer: str) -> str:
    """``/files/1`` -> ``used_config.files.1``: a pointer named as errors name fields."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    return ".".join(["used_config", *parts])


def with_dataset_placeholders(schema: Any, defaults: dict) -> dict:
    """``defaults`` with a placeholder id in each required dataset field it leaves out: a
    pipeline's defaults must pass its schema, and no dataset can be a default, so a required
    dataset field is checked as if given (``apps.pipelines.definitions``)."""
    if not isinstance(schema, dict):
        return defaults
    properties = schema.get("properties") or {}
    filled = dict(defaults)
    for name in schema.get("required") or []:
        sub = properties.get(name)
        if name in filled or not isinstance(sub, dict):
            continue
        items = sub.get("items")
        if sub.get("format") == DATASET_FORMAT:
            filled[name] = PLACEHOLDER
        elif isinstance(items, dict) and items.get("format") == DATASET_FORMAT:
            filled[name] = [PLACEHOLDER]
    return filled
