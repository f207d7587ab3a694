"""How the admin shows a process: its state as a coloured badge, durations, the end of its log
and links to what it ran on. Pure display: reading goes through the selectors."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from apps.processes.models import Process
from apps.processes.selectors import process_log_read

# The end of the log shown on a process's page; the whole kept log is one link away.
LOG_TAIL_BYTES = 16 * 1024


def state_badge(state: str):
    """A state as a badge coloured by what it means (processes/admin.css)."""
    return format_html('<span class="state-badge state-{}">{}</span>', state.lower(), state)


def duration_text(span: timedelta | None) -> str:
    """``1h 02m 03s``, ``4m 05s``, ``6s``; ``-`` for none."""
    if span is None:
        return "-"
    seconds = max(0, int(span.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def _span(start: datetime | None, end: datetime | None) -> timedelta | None:
    if start is None:
        return None
    return (end or timezone.now()) - start


def ran_for(process: Process) -> timedelta | None:
    """From RUNNING to its end (or until now while it runs); None before it ran."""
    return _span(process.started_at, process.finished_at)


def waited_for(process: Process) -> timedelta | None:
    """From its creation to its start on the target (or until its end, or now, if it never
    started)."""
    return _span(process.created_at, process.started_at or process.finished_at)


def whole_log_url(process: Process) -> str:
    return reverse("admin:processes_process_log", args=[process.pk])


def log_tail(process: Process):
    """The last LOG_TAIL_BYTES of the kept log in a <pre>, with a link to the whole."""
    if process.log_size == 0:
        return "No output yet." if process.finished_at is None else "No output."
    start = max(0, process.log_size - LOG_TAIL_BYTES)
    text = process_log_read(process, offset=start, limit=LOG_TAIL_BYTES)["text"]
    if start:
        note = format_html('The last {} of {} bytes. <a href="{}">The whole log</a>',
                           LOG_TAIL_BYTES, process.log_size, whole_log_url(process))
    else:
        note = format_html('{} bytes. <a href="{}">The log alone</a>', process.log_size,
                           whole_log_url(process))
    if process.log_truncated:
        note = format_html("{} The cap dropped bytes from its middle.", note)
    return format_html('<p class="log-note">{}</p><pre class="process-log">{}</pre>', note, text)


def whole_log_text(process: Process) -> str:
    """The whole kept log, with a line where the cap dropped bytes from its middle."""
    parts, offset = [], 0
    while True:
        read = process_log_read(process, offset=offset)
        if read["skipped"]:
            parts.append(f"\n[... {read['skipped']} bytes dropped by the log cap ...]\n")
        parts.append(read["text"])
        if read["next_offset"] <= offset:
            return "".join(parts)
        offset = read["next_offset"]


def admin_link(obj, label=None):
    """A link to ``obj``'s admin page, or its name alone when it has none."""
    if obj is None:
        return "-"
    meta = obj._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or str(obj))
