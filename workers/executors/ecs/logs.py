"""A task's output, from CloudWatch Logs: which tasks a poll reads, and reading by forward token.

The stream is ``<prefix>/<container>/<task id>`` of the pool's log group (the awslogs
driver's naming), read by forward token; the token is the ``LogChunk.cursor`` the control
plane hands back as ``PollItem.log_cursor``.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from ...contract import PollItem
from ..base import LogChunk
from .aws import AwsError, call, client
from .pool import EcsPool

LOG_PAGES_AT_END = 50  # get_log_events pages read at most per poll while draining a stopped task

# Shared by every executor instance of a worker process (a worker makes one per message): whose
# turn it is, per pool, when a poll cannot read every running task's logs.
_POLL_TURNS: dict[str, itertools.count] = {}
_LOCK = threading.Lock()


def log_turn(pool: EcsPool, running: list[str]) -> set[str]:
    """Running tasks whose logs this poll reads: all of them, or a turn of
    ``log_reads_per_poll`` so the pool stays within CloudWatch's GetLogEvents rate."""
    if pool.log_budget is None or len(running) <= pool.log_budget:
        return set(running)
    if pool.log_budget <= 0:
        return set()
    with _LOCK:
        turn = next(_POLL_TURNS.setdefault(pool.name, itertools.count()))
    groups = -(-len(running) // pool.log_budget)
    at = (turn % groups) * pool.log_budget
    return set(sorted(running)[at:at + pool.log_budget])


def read_task_log(pool: EcsPool, item: PollItem, limit: int, *, stopped: bool) -> LogChunk:
    """Bytes of the task's stream from ``item.log_offset``, which the control plane holds
    and which stays the truth: the cursor only says where a page of CloudWatch's starts
    (its forward token and the byte offset of its first event), so a chunk may end in the
    middle of a line or character and the next read resumes exactly where it stopped.

    One page of a running task per poll; up to ``LOG_PAGES_AT_END`` of a ``stopped`` one, whose
    end the poll is waiting for."""
    stream = f"{pool.log_prefix}/{pool.container_name}/{item.handle.rsplit('/', 1)[-1]}"
    token, page_at = _parse_cursor(item.log_cursor)
    if item.log_offset < page_at:  # the control plane holds less than the cursor says
        token, page_at = None, 0
    data = bytearray()
    for _ in range(LOG_PAGES_AT_END if stopped else 1):
        kwargs: dict[str, Any] = dict(logGroupName=pool.log_group, logStreamName=stream,
                                      startFromHead=True)
        if token:
            kwargs["nextToken"] = token
        try:
            page = call(client(pool, "logs", polling=True), "get_log_events", **kwargs)
        except AwsError as exc:
            if exc.code == "ResourceNotFoundException":  # no output written yet
                break
            raise
        blob = b"".join((e.get("message", "") + "\n").encode() for e in page.get("events", []))
        held = item.log_offset + len(data) - page_at
        data += blob[held:held + limit - len(data)]
        if len(data) >= limit:  # the rest of this page comes on the next poll
            break
        following = page.get("nextForwardToken")
        if not following or following == token:  # CloudWatch's answer at the stream's end
            break
        token, page_at = following, page_at + len(blob)
    return LogChunk(bytes(data), _cursor(token, page_at))


def _cursor(token: str | None, page_at: int) -> str:
    """The log cursor: CloudWatch's forward token and the byte offset in the job's output of
    the first event it returns (``@0`` alone: the stream's head)."""
    return f"{token or ''}@{page_at}"


def _parse_cursor(cursor: str | None) -> tuple[str | None, int]:
    token, marker, page_at = (cursor or "").rpartition("@")
    if marker and page_at.isdigit():
        return token or None, int(page_at)
    return None, 0
