"""Reading processes, always through what the asking client may see."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.processes.models import Process, ProcessEvent, ProcessLogChunk

LOG_READ_LIMIT = 1024 * 1024


def process_list(user, application=None) -> QuerySet[Process]:
    """Staff see every process; a client sees its own; an admin user sees what they started."""
    # The sealed secrets are never shown: a re-run loads them when it needs them.
    processes = Process.objects.select_related("pipeline", "pipeline_version", "owner").defer(
        "secret_env")
    if user is not None and user.is_staff:
        return processes
    if application is not None:
        return processes.filter(application=application)
    return processes.filter(owner=user)


def process_events(process: Process) -> QuerySet[ProcessEvent]:
    return process.events.all()


def process_log_read(process: Process, offset: int = 0, limit: int = LOG_READ_LIMIT) -> dict:
    """The kept output from byte ``offset`` on (at most about ``limit`` bytes) and the offset
    to ask from next. ``skipped`` counts bytes dropped by the cap between offset and text."""
    chunks = ProcessLogChunk.objects.filter(process=process, end__gt=offset).order_by("offset")
    parts, position, skipped, read = [], offset, 0, 0
    for chunk in chunks.iterator():
        if chunk.offset > position:
            skipped += chunk.offset - position
            position = chunk.offset
        data = chunk.text.encode()[position - chunk.offset:]
        parts.append(data.decode("utf-8", errors="replace"))
        position = chunk.end
        read += len(data)
        if read >= limit:
            break
    return {
        "offset": offset,
        "next_offset": max(position, offset),
        "size": process.log_size,
        "skipped": skipped,
        "truncated": process.log_truncated,
        "complete": process.finished_at is not None and position >= process.log_size,
        "text": "".join(parts),
    }
