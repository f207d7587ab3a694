"""Applying what workers report. Every event is idempotent: a duplicate, a late one or one
out of order changes nothing it should not, so at-least-once delivery is safe.

An event is believed only from its source. Its message must be signed with the key of the
worker it names (``workers.signing.verify_report``); then each event must be about a process
of that worker's pool and, on targets whose jobs live on one host, come from the host that
holds the job (once a handle is known), or report a handle on its own host (the first one).
Anything else is logged, counted (``apps.pipelines.refusals``) and never applied. The source
a process's history records is the verified worker, never what the event claims."""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.datasets.outputs import outputs_record
from apps.pipelines.refusals import message_refused, refusals_count
from apps.processes import messaging, relay
from apps.processes.attempts import (
    attempt_sync,
    attempts_left,
    exhausted_message,
    retry,
    retry_cause,
)
from apps.processes.clock import observed_at
from apps.processes.models import Process, ProcessLogChunk
from apps.processes.transitions import move, move_to_queued
from workers.contract import HOST_BOUND_TARGETS, Event, State, can_move, is_terminal
from workers.signing import Sender, SignatureError, master_keys, verify_report

log = logging.getLogger(__name__)


class EventRefused(Exception):
    """An event not believed from its sender: ``reason`` is counted, ``detail`` logged."""

    def __init__(self, reason: str, detail: str):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def events_receive(envelope) -> int:
    """Apply the events of a message from ``control``; returns how many changed a process.
    A message that is unsigned, forged or malformed changes nothing: it is logged and
    counted, and the caller acknowledges it (sent again, it would be refused again)."""
    try:
        sender, body = verify_report(envelope, "events", masters=master_keys(create=True))
        events = [Event.from_dict(e) for e in body]
    except SignatureError as exc:
        message_refused("events", str(exc), envelope)
        return 0
    except (TypeError, ValueError):  # signed, yet not a list of events: a worker's bug
        message_refused("events", "malformed body", envelope)
        return 0
    return events_apply(events, sender)


def events_apply(events: list[Event], sender: Sender) -> int:
    """Apply a batch of events ``sender`` verifiably sent, all in one transaction; returns
    how many changed a process. One read decides which events come from their source and
    which bring news, so a poll of a thousand quiet jobs costs one query; the processes with
    news are then locked together, in id order (two batches about the same processes wait
    for each other, they never deadlock), and each event applied in its message's order. A
    database error undoes the whole batch: the message goes back to its queue and comes again
    (every event is idempotent)."""
    ids = {e.process_id for e in events}
    current = {str(p.pk): p for p in Process.objects.filter(pk__in=ids).only(
        "state", "handle", "host", "pool", "target", "log_size", "log_cursor",
        "missing_since", "attempt", "log_base")}
    changed = 0
    refused: Counter[str] = Counter()
    freed = False  # a process may have ended: a slot to fill
    news_ids = _news_ids(events, current)
    # A batch without news (a poll of quiet jobs) opens no transaction and locks nothing.
    with transaction.atomic() if news_ids else nullcontext():
        _lock(news_ids)
        for event in events:
            process = current.get(event.process_id)
            if process is None:
                log.warning("event for unknown process %s ignored", event.process_id)
                continue
            try:
                source_check(process, event, sender)
                if earlier_attempt_alive(process, event):
                    _cancel_earlier_attempt(process, event)
                    continue
                news = news_of(process, event)
                if news and event_apply(event, sender):
                    changed += 1
                    freed = freed or news.missing or (
                        news.state is not None and is_terminal(news.state))
            except EventRefused as exc:
                refused[exc.reason] += 1
                log.warning("refused an event for process %s from %s: %s", process.pk,
                            sender.source, exc.detail)
        if freed:
            relay.wake()  # the relay admits into the freed slots once this commits
    if refused:
        refusals_count(refused, f"came from {sender.source} of pool {sender.pool!r}")
    return changed


def _news_ids(events: list[Event], current: dict[str, Process]) -> list[str]:
    """The processes an event of the batch brings news of, by the first read, in id order."""
    return sorted({e.process_id for e in events
                   if (p := current.get(e.process_id)) is not None and news_of(p, e)})


def _lock(ids: list[str]) -> None:
    """Lock these processes in id order; ``event_apply`` reads each again under its lock."""
    if ids:
        list(Process.objects.select_for_update().filter(pk__in=ids).order_by("pk")
             .values_list("pk", flat=True))


def source_check(process: Process, event: Event, sender: Sender) -> None:
    """Raise EventRefused unless ``sender`` may report ``event`` about ``process``: a worker
    of its pool and, for a job that lives on one host, the worker of that host."""
    if process.pool != sender.pool:
        raise EventRefused("event: a process of another pool",
                           f"the process is of pool {process.pool!r}, the sender of "
                           f"{sender.pool!r}")
    if process.target not in HOST_BOUND_TARGETS:
        return  # one front door (Slurm, ECS): any worker of the pool asks for any handle
    if process.handle and process.host != sender.host:
        raise EventRefused("event: a job on another host",
                           f"its job lives on {process.host!r}, the sender on "
                           f"{sender.host!r}")
    if not process.handle and event.handle and event.host != sender.host:
        raise EventRefused("event: a handle reported for another host",
                           f"a handle on {event.host!r} reported from {sender.host!r}")


def earlier_attempt_alive(process: Process, event: Event) -> bool:
    """A job of an earlier attempt than the process's current one says it runs (a second
    delivery of that attempt's job spec arrived late and started it): it must be stopped,
    or the process would run twice."""
    return ((event.attempt or 1) < process.attempt and bool(event.handle)
            and event.state is not None and not is_terminal(event.state))


def _cancel_earlier_attempt(process: Process, event: Event) -> None:
    log.warning("process %s: job %s of attempt %s runs during attempt %s: cancelling it",
                process.pk, event.handle, event.attempt or 1, process.attempt)
    try:
        full = Process.objects.select_related("pipeline_version__pool").get(pk=process.pk)
        messaging.send_cancel_of_attempt(full, event.handle or "", event.host,
                                         event.attempt or 1)
    except Exception as exc:  # a later event of the same job asks again
        log.warning("cancel of %s not sent now: %s", event.handle, exc)


@dataclass(frozen=True)
class News:
    """What an event would change of a process, as ``news_of`` decides it."""

    handle: bool = False  # the job's first handle (and host)
    log: bool = False  # output bytes past those kept
    log_cursor: bool = False  # the target's new resume token
    missing: bool = False  # the target does not know the job: on the way to LOST (or STOPPED)
    seen_again: bool = False  # a state of a job that was missing: missing no more
    state: State | None = None  # a move forward
    cancel: bool = False  # a job that reached its target after its process was stopped

    def __bool__(self) -> bool:
        return any(vars(self).values())


def news_of(process: Process, event: Event) -> News:
    """What applying ``event`` would change of ``process``: the one place that decides it.
    Asked on the batch's one read (an event without news takes no lock) and again under the
    row lock, where it says what to write. Reads only the fields ``events_apply`` loads.

    An event of another attempt than the process's current one brings no news: an earlier
    attempt's job has ended for the control plane (a worker that names no attempt knows
    only the first)."""
    if (event.attempt or 1) != process.attempt:
        return News()
    to = State(event.state) if event.state else None
    return News(
        handle=bool(event.handle) and not process.handle,
        log=event.log_end is not None and process.log_base + event.log_end > process.log_size,
        log_cursor=bool(event.log_cursor) and event.log_cursor != process.log_cursor,
        missing=event.missing and not is_terminal(process.state),
        seen_again=not event.missing and to is not None and process.missing_since is not None,
        state=to if to is not None and can_move(process.state, to) else None,
        cancel=(process.state == State.STOPPED and bool(event.handle) and to is not None
                and not is_terminal(to)),
    )


def event_apply(event: Event, sender: Sender) -> bool:
    """Apply one event in the caller's transaction (``events_apply``'s): the row is read
    again under its lock, and nothing is written before the event is believed."""
    process = Process.objects.select_for_update().filter(pk=event.process_id).first()
    if process is None:
        return False
    # Again under the lock: another host's worker may have reported the handle meanwhile.
    source_check(process, event, sender)
    event = replace(event, source=sender.source)
    news = news_of(process, event)
    fields: list[str] = []
    if news.handle:
        process.handle, process.host = event.handle or "", event.host or ""
        fields += ["handle", "host"]
    if news.log:
        fields += _log_append(process, event)
    if news.log_cursor:
        process.log_cursor = event.log_cursor or ""
        fields.append("log_cursor")
    if news.missing:
        fields += _missing(process, event)
    if news.seen_again:
        process.missing_since = None
        fields.append("missing_since")
    if news.cancel:
        log.info("process %s was stopped before %s started: cancelling it", process.pk,
                 event.handle)
        transaction.on_commit(lambda: messaging.send_cancel(process))
    if news.state:
        fields += _state(process, event, news.state)
    if fields:
        process.save(update_fields=sorted(set(fields) | {"updated_at"}))
        _attempt_follow(process, event, fields)
    return bool(fields)


def _attempt_follow(process: Process, event: Event, fields: list[str]) -> None:
    """The current attempt's row follows what changed of its process; an end keeps the
    reason the target gave for it."""
    if {"state", "handle", "message"} & set(fields):
        reason = "lost" if process.state == State.LOST else event.reason
        attempt_sync(process, reason=reason if is_terminal(process.state) else "")


def _state(process: Process, event: Event, to: State) -> list[str]:
    fields = []
    # When the worker saw it, not when it is applied: a consumer that was down applies old news.
    at = observed_at(event.at)
    if process.state == State.PENDING and process.admitted_at is None:
        # Only a spec sent before admission existed gets here: its job is on the target, so
        # it holds a slot from now on.
        log.warning("process %s reached its target unadmitted: counted as admitted now",
                    process.pk)
        process.admitted_at = timezone.now()
        fields.append("admitted_at")
    if process.state == State.PENDING and can_move(State.QUEUED, to):
        # A worker answered before the web process marked the publish: the spec was sent.
        fields += move_to_queued(
            process, "its worker answered before the publish was recorded", at=at)
    message = event.message or _default_message(to, event.exit_code)
    cause = retry_cause(process, to, event.exit_code, event.reason) if is_terminal(to) else ""
    if cause and attempts_left(process):
        return fields + retry(process, to, exit_code=event.exit_code, message=message,
                              reason=event.reason, cause=cause, source=event.source,
                              at=at)
    moved = move(process, to, event.source, event.message, at=at)
    fields += moved
    if moved and is_terminal(to):
        outputs_record(process, event.outputs)  # stored by the worker before it said so
        process.exit_code = event.exit_code
        process.message = exhausted_message(process, message, cause) if cause else message
        fields += ["exit_code", "message"]
    return fields


def _default_message(state: State, exit_code: int | None) -> str:
    if state == State.SUCCEEDED:
        return "finished"
    if exit_code is not None:
        return f"exited with code {exit_code}"
    return state.value.lower()


def _missing(process: Process, event: Event) -> list[str]:
    """The target no longer knows the handle of an unfinished job. The executor already asked
    its second sources (sacct, the exit-code file); only after a grace period is the job
    declared gone."""
    now = timezone.now()
    if process.missing_since is None:
        process.missing_since = now
        return ["missing_since"]
    if now - process.missing_since < timedelta(seconds=settings.LOST_GRACE_S):
        return []
    to = State.STOPPED if process.state == State.STOPPING else State.LOST
    reason = f"{event.message}; not seen since {process.missing_since:%Y-%m-%d %H:%M:%S} UTC"
    cause = retry_cause(process, to, None, "lost")
    if cause and attempts_left(process):
        return retry(process, to, exit_code=None, message=reason, reason="lost", cause=cause,
                     source=event.source, at=now)
    fields = move(process, to, event.source, reason)  # decided here and now: no worker time
    if fields:
        process.message = exhausted_message(process, reason, cause) if cause else reason
        fields.append("message")
    return fields


def _log_append(process: Process, event: Event) -> list[str]:
    """Keep the bytes of ``event`` past those kept already (a duplicate brings none)."""
    if event.log_end is None:  # no end, no bytes to keep (news_of asks for one first)
        return []
    # The job counts its bytes from 0; its attempt's output starts at log_base in the log.
    offset = process.log_base + (event.log_offset or 0)
    end = process.log_base + event.log_end
    data = event.log.encode()
    start = max(offset, process.log_size)
    text = data[start - offset:].decode("utf-8", errors="replace")
    ProcessLogChunk.objects.create(process=process, offset=start, end=end, text=text)
    process.log_size = end
    process.log_kept += end - start
    fields = ["log_size", "log_kept"]
    if process.log_kept > settings.LOG_CAP_BYTES:
        fields += _log_trim(process)
    return fields


def _log_trim(process: Process) -> list[str]:
    """Drop the oldest chunks after the head until the log fits its cap: the start of a log
    says what ran, its end says how it ended; the middle goes first."""
    chunks = ProcessLogChunk.objects.filter(process=process).values_list("id", "offset", "end")
    drop = []
    for chunk_id, offset, end in chunks:
        if process.log_kept <= settings.LOG_CAP_BYTES:
            break
        if offset < settings.LOG_HEAD_BYTES or end == process.log_size:
            continue
        drop.append(chunk_id)
        process.log_kept -= end - offset
    ProcessLogChunk.objects.filter(id__in=drop).delete()
    process.log_truncated = True
    return ["log_kept", "log_truncated"]
