"""The sbatch options HPC users set beyond the resources: their names, their value checks and
the pool's allowed lists.

A pool file sets defaults (``sbatch:``) and what pipelines and runs may ask (``allow_sbatch:``);
a pipeline file may set options (``sbatch:``) within that list, and a POST may set those its
pipeline's ``allow.sbatch`` names, again within that list. The job spec carries the options
merged (pool, then pipeline, then run; a later one replaces an option, it never merges into
it). The control plane checks them where they are written, and a worker checks them again
with :func:`parse` before it submits.

Both sides import this module (the control plane where options are written, the worker before
it submits); how a Slurm target passes them on is the executors'
(``workers.executors.slurm.sbatch_render``). The checks keep every value within characters
Slurm reads as data.

==============  ===========================================  ===================================
option          value                                        ``allow_sbatch`` entry
==============  ===========================================  ===================================
constraint      feature expression: ``a100``, ``a100&ib``,   the features it may name
                ``[v100|a100]``, ``bigmem*2``
nodes           a count, or ``MIN-MAX``                      the most nodes
ntasks          a count                                      the most tasks
cpus_per_task   a count (replaces ``resources.cpus``)        the most
gres            ``name[:type]:count``, comma-separated,      ``name`` or ``name:type`` entries
                GPUs excepted (``resources.gpus``)
reservation     a reservation name                           the names
exclusive       true, false, ``user`` or ``mcs``             the values (false is always fine)
mail_type       a list of sbatch's mail types                the types
mail_user       an address or a user name                    addresses, ``*@lab.example`` globs
chdir           an absolute path (a shared file system)      dirs it may be or be under
export          rules ``NAME=VALUE`` or ``NAME`` (the        the names
                submission node's own value)
==============  ===========================================  ===================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

# sbatch's --mail-type words (Slurm 22.05 and later).
MAIL_TYPES = ("NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "INVALID_DEPEND", "STAGE_OUT",
              "TIME_LIMIT", "TIME_LIMIT_90", "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS")
FEATURE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# A feature expression: names, counts (``*2``) and sbatch's operators & | , [ ] ( ).
CONSTRAINT = re.compile(r"[A-Za-z0-9_.&|,*\[\]()-]{1,500}")
GRES_ITEM = re.compile(r"(?P<name>[A-Za-z0-9_-]{1,64})(?::(?P<type>[A-Za-z0-9_.-]{1,64}))?"
                       r":(?P<count>\d{1,6})")
SLURM_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,200}")
MAIL_USER = re.compile(r"[A-Za-z0-9_.+-]{1,64}(@[A-Za-z0-9.-]{1,253})?")
# The characters of a run dir (run_dirs.SAFE_PATH), absolute.
PATH = re.compile(r"/[A-Za-z0-9_./@+,=-]{0,4095}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
# sbatch splits --export on commas and reads quotes: a value holds neither.
EXPORT_VALUE = re.compile(r"[^,'\"\x00-\x1f\x7f]{0,1000}")
RESERVED_EXPORT = ("ORCH_", "SLURM_", "SBATCH_")
EXPORT_WORDS = ("ALL", "NONE", "NIL")  # sbatch's own words in --export
COUNT_MAX = 100_000


class OptionError(ValueError):
    """A value no Slurm target may pass on; the message names the option."""


@dataclass(frozen=True)
class Option:
    name: str
    # The value, normalised (``"END,FAIL"`` -> ``["END", "FAIL"]``); OptionError when bad.
    read: Callable[[str, Any], Any]
    # An ``allow_sbatch`` entry, normalised; OptionError when bad.
    read_allowed: Callable[[str, Any], Any]
    # Why ``value`` (read) is outside ``allowed`` (read), or None when it is within.
    outside: Callable[[Any, Any], str | None]


def _fail(where: str, what: str, value: Any) -> OptionError:
    shown = repr(value)
    shown = shown if len(shown) <= 100 else f"{shown[:100]}..."  # a POST's value may be long
    return OptionError(f"{where}: must be {what}, not {shown}")


def _count(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= COUNT_MAX:
        raise _fail(where, f"a whole number from 1 to {COUNT_MAX}", value)
    return value


def _text(pattern: re.Pattern, what: str) -> Callable[[str, Any], str]:
    def read(where: str, value: Any) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise _fail(where, what, value)
        return value
    return read


def _texts(read_one: Callable[[str, Any], Any]) -> Callable[[str, Any], list]:
    """A non-empty list whose entries each pass ``read_one``."""
    def read(where: str, value: Any) -> list:
        if not isinstance(value, list) or not value:
            raise _fail(where, "a list", value)
        return list(dict.fromkeys(read_one(f"{where}[{i}]", v) for i, v in enumerate(value)))
    return read


def _nodes(where: str, value: Any) -> int | str:
    if isinstance(value, str):
        found = re.fullmatch(r"(\d{1,6})-(\d{1,6})", value)
        if found and 1 <= int(found[1]) <= int(found[2]) <= COUNT_MAX:
            return value
        raise _fail(where, "a count or a range MIN-MAX such as 2-4", value)
    return _count(where, value)


def _most_nodes(value: int | str) -> int:
    return value if isinstance(value, int) else int(value.split("-")[1])


def _constraint(where: str, value: Any) -> str:
    what = "a feature expression such as a100 or a100&ib (letters, digits, _ . - & | , * [ ] ( ))"
    if not isinstance(value, str) or not CONSTRAINT.fullmatch(value) or not features_of(value):
        raise _fail(where, what, value)
    return value


def features_of(constraint: str) -> set[str]:
    """The feature names of a constraint expression (counts such as ``*2`` left out)."""
    return {word for word in re.split(r"[&|,\[\]()]+", re.sub(r"\*\d+", "", constraint))
            if word}


def _gres(where: str, value: Any) -> str:
    what = "name[:type]:count items, comma-separated, such as nvme:1 or gpu_mem:a100:2"
    if not isinstance(value, str) or len(value) > 500:
        raise _fail(where, what, value)
    items = value.split(",")
    if not all(GRES_ITEM.fullmatch(item) for item in items):
        raise _fail(where, what, value)
    if any(item.split(":")[0] == "gpu" for item in items):
        raise OptionError(f"{where}: GPUs are asked with resources.gpus, not gres")
    return value


def _gres_allowed(where: str, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(
            r"[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9_.-]{1,64})?", value):
        raise _fail(where, "a gres name or name:type such as nvme or gpu_mem:a100", value)
    return value


def _exclusive(where: str, value: Any) -> bool | str:
    if not (isinstance(value, bool) or value in ("user", "mcs")):
        raise _fail(where, "true, false, user or mcs", value)
    return value


def _mail_type(where: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not value or not all(v in MAIL_TYPES for v in value):
        raise _fail(where, f"a list of {', '.join(MAIL_TYPES)}", value)
    return list(dict.fromkeys(value))


def _mail_type_one(where: str, value: Any) -> str:
    return _mail_type(where, [value])[0]


def _mail_pattern(where: str, value: Any) -> str:
    if not isinstance(value, str) or not MAIL_USER.fullmatch(value.replace("*", "x")):
        raise _fail(where, "an address or user name, * allowed, such as *@lab.example.org",
                    value)
    return value


def _chdir(where: str, value: Any) -> str:
    what = "an absolute path of letters, digits and _ . / @ + , = - (no . or .. parts)"
    if not isinstance(value, str) or not PATH.fullmatch(value):
        raise _fail(where, what, value)
    if any(part in (".", "..") for part in value.split("/")):
        raise _fail(where, what, value)
    return value.rstrip("/") or "/"


def _export_name(where: str, name: Any) -> str:
    if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
        raise _fail(where, "an environment variable name (letters, digits and _)", name)
    if name.upper().startswith(RESERVED_EXPORT) or name in EXPORT_WORDS or name == "SLURM_JWT":
        raise OptionError(f"{where}: {name} is reserved (ORCH_*, SLURM_*, SBATCH_*, "
                          f"{', '.join(EXPORT_WORDS)})")
    return name


def _export_rule(where: str, rule: Any) -> str:
    if not isinstance(rule, str):
        raise _fail(where, "NAME or NAME=VALUE", rule)
    name, is_set, value = rule.partition("=")
    _export_name(where, name)
    if is_set and not EXPORT_VALUE.fullmatch(value):
        raise OptionError(f"{where}: the value of {name} holds a comma, a quote or a control "
                          "character (sbatch would split or unquote it)")
    return rule


def _within(values: list, allowed: list, what: str) -> str | None:
    outside = [v for v in values if v not in allowed]
    return f"{', '.join(map(str, outside))} not among the {what} allowed" if outside else None


def _at_most(value: int, most: int) -> str | None:
    return f"{value} is more than the {most} allowed" if value > most else None


def _gres_outside(value: str, allowed: list[str]) -> str | None:
    for item in value.split(","):
        name, _, rest = item.partition(":")  # read by _gres: name[:type]:count
        kind = rest.rpartition(":")[0] or None
        if name not in allowed and (kind is None or f"{name}:{kind}" not in allowed):
            return f"{item} not among the gres allowed"
    return None


def _under(path: str, allowed: list[str]) -> str | None:
    if any(path == top or path.startswith(top.rstrip("/") + "/") for top in allowed):
        return None
    return f"{path} is not (under) a directory allowed"


OPTIONS: dict[str, Option] = {option.name: option for option in (
    Option("constraint", _constraint, _texts(_text(FEATURE, "a feature name")),
           lambda v, a: _within(sorted(features_of(v)), a, "features")),
    Option("nodes", _nodes, _count, lambda v, a: _at_most(_most_nodes(v), a)),
    Option("ntasks", _count, _count, _at_most),
    Option("cpus_per_task", _count, _count, _at_most),
    Option("gres", _gres, _texts(_gres_allowed), _gres_outside),
    Option("reservation", _text(SLURM_NAME, "a reservation name"),
           _texts(_text(SLURM_NAME, "a reservation name")),
           lambda v, a: _within([v], a, "reservations")),
    Option("exclusive", _exclusive, _texts(_exclusive),
           lambda v, a: None if v is False else _within([v], a, "values")),
    Option("mail_type", _mail_type, _texts(_mail_type_one),
           lambda v, a: _within(v, a, "mail types")),
    Option("mail_user", _text(MAIL_USER, "an address or a user name"), _texts(_mail_pattern),
           lambda v, a: None if any(fnmatchcase(v, p) for p in a)
           else f"{v} matches none of the addresses allowed"),
    Option("chdir", _chdir, _texts(_chdir), _under),
    Option("export", _texts(_export_rule), _texts(_export_name),
           lambda v, a: _within([r.partition("=")[0] for r in v], a, "names")),
)}
NAMES = tuple(OPTIONS)


def _mapping(where: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise OptionError(f"{where}: must be a mapping of sbatch options ({', '.join(NAMES)})")
    unknown = sorted(str(k) for k in value if k not in OPTIONS)
    if unknown:
        raise OptionError(f"{where}.{unknown[0]}: not an sbatch option here (known: "
                          f"{', '.join(NAMES)})")
    return value


def parse(values: Any, where: str = "sbatch") -> dict[str, Any]:
    """``sbatch:`` of a pool, a pipeline, a POST or a job spec, checked and normalised; null
    values are left out. Raises OptionError naming the first bad option (``sbatch.gres``)."""
    return {name: OPTIONS[name].read(f"{where}.{name}", value)
            for name, value in _mapping(where, values).items() if value is not None}


def parse_allowed(values: Any, where: str = "allow_sbatch") -> dict[str, Any]:
    """A pool's ``allow_sbatch:`` checked and normalised (a list per option, a number for the
    counts). Raises OptionError naming the first bad entry."""
    return {name: OPTIONS[name].read_allowed(f"{where}.{name}", value)
            for name, value in _mapping(where, values).items() if value is not None}


def outside_allowed(values: Mapping[str, Any], allowed: Mapping[str, Any],
                    where: str = "sbatch", pool: str = "") -> list[str]:
    """Each option of ``values`` (parsed) that ``allowed`` (parsed) does not let through, as
    ``sbatch.constraint: h100 not among the features allowed (pool P's
    allow_sbatch.constraint: a100, v100)``."""
    problems = []
    of_pool = f"pool {pool}'s " if pool else ""
    for name, value in values.items():
        if name not in allowed:
            problems.append(f"{where}.{name}: {of_pool}allow_sbatch lets no pipeline or run "
                            f"set {name}")
        elif why := OPTIONS[name].outside(value, allowed[name]):
            shown = allowed[name]
            shown = ", ".join(map(str, shown)) if isinstance(shown, list) else shown
            problems.append(f"{where}.{name}: {why} ({of_pool}allow_sbatch.{name}: {shown})")
    return problems
