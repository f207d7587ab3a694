"""What a request may hold before anything stores it: a config's depth and size, and text
PostgreSQL and a job's environment can take (no NUL, no lone UTF-16 surrogate, no infinite
number). Each problem names its place (``used_config.a.b``) and the limit it broke."""

from __future__ import annotations

import json
import math
import re

from django.conf import settings

# Containers (objects, arrays) nested in a config at most: a config is data, not a tree
# for recursion to fall down (a 10,000-deep one broke the JSON parser itself).
MAX_DEPTH = 32
# Problems reported per field at most: a million NULs need not be named one by one.
MAX_PROBLEMS = 10
IDEMPOTENCY_KEY_MAX_CHARS = 200

_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:]')
_SURROGATE = re.compile("[\ud800-\udfff]")


def too_deep(text: str, max_depth: int) -> str | None:
    """Where JSON ``text`` nests more than ``max_depth`` containers, found without parsing it
    (the parser recurses, and breaks past Python's recursion limit): the top-level key under
    which it does, "" outside any key, None when it does not."""
    if text.count("[") + text.count("{") <= max_depth:
        return None
    depth, last_string, key = 0, "", ""
    for token in _JSON_TOKEN.finditer(text):
        found = token.group()
        if found in "[{":
            depth += 1
            if depth > max_depth:
                return key
        elif found in "]}":
            depth -= 1
        elif found == ":":
            if depth == 1:
                key = last_string
        else:
            last_string = _decoded(found)
    return None


def _decoded(string_token: str) -> str:
    try:
        return json.loads(string_token)
    except ValueError:
        return string_token.strip('"')


def too_deep_message(max_depth: int = MAX_DEPTH) -> str:
    return f"nested deeper than {max_depth} levels of objects and arrays (the limit)."


def value_problems(value, where: str, max_depth: int = MAX_DEPTH) -> list[str]:
    """Every way ``value`` (parsed JSON) is deeper than ``max_depth``, or holds a string or key
    with a NUL or a lone surrogate, or a number that is not finite. Walks without recursion."""
    problems: list[str] = []
    stack = [(value, where, 0)]
    while stack and len(problems) < MAX_PROBLEMS:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                problems.append(f"{path}: {too_deep_message(max_depth)}")
                continue
            if isinstance(item, dict):
                for key, child in item.items():
                    problems.extend(text_problems(key, f"{path}: the key {key!a}"))
                    stack.append((child, f"{path}.{key}", depth + 1))
            else:
                stack.extend((child, f"{path}.{n}", depth + 1) for n, child in enumerate(item))
        elif isinstance(item, str):
            problems.extend(text_problems(item, path))
        elif isinstance(item, float) and not math.isfinite(item):
            problems.append(f"{path}: the number is out of range ({item}).")
    return problems[:MAX_PROBLEMS]


def text_problems(text: str, where: str) -> list[str]:
    """A NUL (PostgreSQL refuses it, an environment cannot hold it) or a lone surrogate (not
    Unicode: it cannot be written as UTF-8)."""
    problems = []
    if "\0" in text:
        problems.append(f"{where}: must not contain a NUL character.")
    if _SURROGATE.search(text):
        problems.append(f"{where}: must not contain a lone UTF-16 surrogate (not valid Unicode).")
    return problems


def size_problems(value, where: str) -> list[str]:
    """A config bigger than ORCH_CONFIG_MAX_BYTES once written as JSON."""
    limit = settings.CONFIG_MAX_BYTES
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > limit:
        return [f"{where}: {size} bytes as JSON; the limit is {limit} (ORCH_CONFIG_MAX_BYTES)."]
    return []


def config_problems(value, where: str = "used_config") -> list[str]:
    return value_problems(value, where) or size_problems(value, where)


def idempotency_key_problems(key: str) -> list[str]:
    if len(key) > IDEMPOTENCY_KEY_MAX_CHARS:
        return [f"Idempotency-Key: {len(key)} characters; the limit is "
                f"{IDEMPOTENCY_KEY_MAX_CHARS}."]
    if not all(" " <= char <= "~" for char in key):
        return ["Idempotency-Key: only printable ASCII characters (no control characters)."]
    return []
