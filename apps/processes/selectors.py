"""Reading processes, always through what the caller may see: the processes of its teams.
Views, the admin and its actions find processes here and nowhere else."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.processes.models import Process, ProcessEvent, ProcessLogChunk
from apps.teams.access import Caller, in_teams, one_in_reach
from apps.teams.roles import Role

LOG_READ_LIMIT = 1024 * 1024


def process_list(caller: Caller, needed: str = Role.VIEWER) -> QuerySet[Process]:
    """The processes of the teams where ``caller`` holds ``needed`` or more (a superuser:
    all of them)."""
    # The sealed secrets are never shown: a re-run loads them when it needs them. The pool:
    # its sbatch defaults are part of what a process shows.
    processes = Process.objects.select_related(
        "pipeline", "pipeline_version__pool", "owner", "team").defer("secret_env")
    return in_teams(processes, caller, needed)


def process_for(caller: Caller, pk, action: str = "read") -> Process:
    """The process ``pk`` for ``action`` (a key of ACTION_ROLES). Http404 when the caller
    cannot see it (or ``pk`` is no process id): the answer never says whether it exists; a
    RoleTooLow (403) naming the role needed when it can see it but not do that."""
    return one_in_reach(process_list(caller), caller, pk, action, "process")


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
