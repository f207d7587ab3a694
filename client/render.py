"""How ``orch`` shows what the API answers: tables, coloured states, ages and durations."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

SHORT_ID = 8
STATE_STYLES = {
    "PENDING": "dim", "QUEUED": "blue", "SUBMITTED": "cyan", "RUNNING": "bold cyan",
    "STOPPING": "yellow", "SUCCEEDED": "green", "FAILED": "bold red", "STOPPED": "magenta",
    "LOST": "red",
}


def short(process_id: str) -> str:
    return str(process_id)[:SHORT_ID]


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def moment(value: str | None) -> str:
    """An API timestamp to the millisecond, in UTC: ``2026-12-03 08:25:56.549Z``."""
    when = parse_time(value)
    if when is None:
        return value or "-"
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def span(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h10m``, ``4d3h``; ``-`` for none."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600}h"


def age(process: dict[str, Any], now: datetime | None = None) -> str:
    created = parse_time(process.get("created_at"))
    now = now or datetime.now(UTC)
    return span((now - created).total_seconds()) if created else "-"


def duration(process: dict[str, Any], now: datetime | None = None) -> str:
    """From its start on the target to its end (or now, while it runs)."""
    started = parse_time(process.get("started_at"))
    if started is None:
        return "-"
    ended = parse_time(process.get("finished_at")) or now or datetime.now(UTC)
    return span((ended - started).total_seconds())


def print_json(data: Any) -> None:
    """JSON on standard output, as it is (no colours, no markup), for scripts."""
    print(json.dumps(data, indent=2, ensure_ascii=False), flush=True)


def process_table(processes: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("ID", "PIPELINE", "STATE", "AGE", "DURATION", "POOL", "TEAM"):
        table.add_column(name, no_wrap=True)
    now = datetime.now(UTC)
    for p in processes:
        table.add_row(short(p["id"]), escape(f"{p['pipeline']} v{p['pipeline_version']}"),
                      state_text(p["state"]), age(p, now), duration(p, now),
                      escape(p.get("pool") or "-"), escape(p.get("team") or "-"))
    return table


def process_detail(p: dict[str, Any]) -> Table:
    """One process as label: value lines."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("id", p["id"]), ("pipeline", f"{p['pipeline']} v{p['pipeline_version']}"),
        ("state", state_text(p["state"])), ("team", p.get("team")),
        ("pool", f"{p.get('pool')} ({p.get('target')})"), ("host", p.get("host")),
        ("handle", p.get("handle")), ("exit code", p.get("exit_code")),
        ("message", p.get("message")), ("waiting for", p.get("waiting_for")),
        ("config", json.dumps(p.get("used_config"), ensure_ascii=False)),
        ("created", p.get("created_at")), ("started", p.get("started_at")),
        ("finished", p.get("finished_at")), ("age", age(p)), ("duration", duration(p)),
        ("log", f"{p.get('log_size', 0)} bytes"),
    ]
    for label, value in rows:
        if value is None or value == "":
            continue
        table.add_row(label, value if isinstance(value, Text) else escape(str(value)))
    return table


def events_table(events: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("TIME", "FROM", "TO", "SOURCE"):
        table.add_column(name, no_wrap=True)
    table.add_column("DETAIL", overflow="fold")
    for e in events:
        table.add_row(escape(moment(e["time"])), state_text(e["from"] or "-"),
                      state_text(e["to"]),
                      escape(e.get("source") or ""), escape(e.get("detail") or ""))
    return table


def pipelines_table(pipelines: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("NAME", "VERSION", "TARGET", "POOL", "DESCRIPTION"):
        table.add_column(name, overflow="fold")
    for p in pipelines:
        version = f"{p['version']}{' (withdrawn)' if p.get('withdrawn') else ''}"
        table.add_row(escape(p["name"]), version, escape(p["target"]), escape(p["pool"]),
                      escape(p.get("description") or p.get("label") or ""))
    return table


def pipeline_detail(p: dict[str, Any]) -> Group:
    """A pipeline as a reader wants it: what it is, its config fields with their types and
    defaults, its secrets, resources and versions."""
    parts: list[Any] = [f"[bold]{escape(p['name'])}[/] v{p['version']} "
                        f"({escape(p['target'])}, pool {escape(p['pool'])})"]
    if p.get("description"):
        parts.append(escape(p["description"]))
    parts += ["", config_table(p.get("config_schema") or {}, p.get("defaults") or {})]
    if p.get("secrets"):
        parts.append(f"\n[bold]secrets[/]: {escape(', '.join(_names(p['secrets'])))}")
    if p.get("resources"):
        resources = ", ".join(f"{k}={v}" for k, v in p["resources"].items())
        parts.append(f"[bold]resources[/]: {escape(resources)}")
    versions = p.get("versions") or []
    if versions:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for name in ("VERSION", "LABEL", "LOADED", "WITHDRAWN"):
            table.add_column(name)
        for v in versions:
            table.add_row(str(v["number"]), escape(v.get("label") or ""),
                          moment(v.get("loaded_at")), "yes" if v.get("withdrawn") else "")
        parts += ["", table]
    return Group(*parts)


def config_table(schema: dict[str, Any], defaults: dict[str, Any]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("CONFIG", "TYPE", "DEFAULT", "DESCRIPTION"):
        table.add_column(name, overflow="fold")
    required = set(schema.get("required") or [])
    for key, spec in (schema.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        kind = _type_of(spec) + (" (required)" if key in required else "")
        default = json.dumps(defaults[key]) if key in defaults else "-"
        table.add_row(escape(key), escape(kind), escape(default),
                      escape(spec.get("description") or spec.get("title") or ""))
    return table


def _type_of(spec: dict[str, Any]) -> str:
    kind = spec.get("type", "any")
    text = "|".join(kind) if isinstance(kind, list) else str(kind)
    if "enum" in spec:
        text += " of " + ", ".join(json.dumps(v) for v in spec["enum"])
    bounds = [f"{word} {spec[key]}" for key, word in (("minimum", ">="), ("maximum", "<="))
              if key in spec]
    if spec.get("format"):
        text += f" ({spec['format']})"
    return " ".join([text, *bounds])


def _names(secrets: Any) -> list[str]:
    if isinstance(secrets, dict):
        return list(secrets)
    if isinstance(secrets, list):
        return [s if isinstance(s, str) else str(s.get("name", s)) for s in secrets]
    return [str(secrets)]


def pools_table(pools: list[dict[str, Any]]) -> Table:
    """What ``snw ls`` showed: target, workers alive, capacity, running, waiting, paused (and
    busy slots, which the server shows to staff only)."""
    staff = any("workers" in p for p in pools)
    table = Table(box=None, header_style="bold", pad_edge=False)
    columns = ["POOL", "TARGET", "STATUS", "WORKERS", "CAPACITY", "RUNNING", "WAITING",
               "PAUSED"] + (["BUSY"] if staff else [])
    for name in columns:
        table.add_column(name, no_wrap=True)
    for p in pools:
        status = Text(p.get("status", "?"), style="green" if p.get("status") == "up" else "red")
        workers = str(p.get("workers_alive", len(p.get("workers", []))))
        row: list[str | Text] = [
            escape(p["name"]), escape(p["target"]), status, workers, str(p["capacity"]),
            str(p.get("running", 0)), str(p.get("waiting", 0)),
            Text("paused", style="yellow") if p.get("paused") else ""]
        table.add_row(*row, *([str(p.get("busy", 0))] if staff else []))
    return table


def queue_table(entries: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("#", "ID", "PIPELINE", "TEAM", "PRIORITY", "WAITING FOR"):
        table.add_column(name, overflow="fold")
    for e in entries:
        table.add_row(str(e["position"]), short(e["id"]), escape(e.get("pipeline") or "-"),
                      escape(e.get("team") or "-"), str(e.get("priority", 0)),
                      escape(e.get("waiting_for") or ""))
    return table


def teams_table(teams: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("TEAM", "NAME", "ROLE"):
        table.add_column(name)
    for t in teams:
        table.add_row(escape(t["slug"]), escape(t["name"]), escape(t.get("role") or "-"))
    return table


def team_detail(team: dict[str, Any]) -> Group:
    parts: list[Any] = [f"[bold]{escape(team['slug'])}[/] {escape(team['name'])} "
                        f"(your role: {escape(team.get('role') or '-')})"]
    for title, rows, key in (("MEMBER", team.get("members") or [], "username"),
                             ("CLIENT", team.get("clients") or [], "name")):
        if not rows:
            continue
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column(title)
        table.add_column("ROLE")
        if title == "CLIENT":
            table.add_column("CLIENT ID")
        for row in rows:
            cells = [escape(row[key]), escape(row["role"])]
            table.add_row(*cells, *([escape(row["client_id"])] if title == "CLIENT" else []))
        parts += ["", table]
    return Group(*parts)


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def datasets_table(datasets: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("ID", "NAME", "SIZE", "SHA256", "CREATED"):
        table.add_column(name, overflow="fold")
    for d in datasets:
        table.add_row(escape(str(d["id"])), escape(d.get("name") or ""), size(d.get("size")),
                      escape((d.get("sha256") or "")[:16]), escape(d.get("created_at") or ""))
    return table


def outputs_table(outputs: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("PATH", "SIZE", "SHA256"):
        table.add_column(name, overflow="fold")
    for o in outputs:
        table.add_row(escape(o["path"]), size(o.get("size")), escape(o.get("sha256") or ""))
    return table
