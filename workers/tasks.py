"""The worker's tasks: thin, each hands a contract message to one executor call.

Job specs arrive at least once (acks_late, reject_on_worker_lost): ``submit`` is safe twice
because ``Executor.submit`` finds the job it already started. Polls and cancels are
idempotent by nature. No task waits for a job to run.

A submission's events are the only way the control plane learns the job's handle: a job spec
is acknowledged only once they are with the broker; if they cannot be sent, the spec goes back
to its queue and its next delivery finds the job and reports it. A poll whose events cannot be
sent releases nothing; the next round asks again.

Every message arrives as a signed envelope (``workers.signing``) and is verified with this
worker's pool keys (``workers.credential``) before anything else: one that is unsigned, badly
signed, stale or for another pool is logged, counted and acknowledged, and nothing is
started, stopped or asked for it. The events a task sends back are signed with this worker's
own key (``workers.events``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter

from celery.exceptions import Reject

from . import credential, poll_stats
from .celery_app import app
from .contract import (
    TASK_CANCEL,
    TASK_POLL,
    TASK_SUBMIT,
    Event,
    JobSpec,
    PollItem,
    PollRequest,
    State,
    is_terminal,
)
from .events import send_events
from .executors import get_executor
from .executors.base import ExecutorError
from .follow_ups import FollowUps
from .secrets import SecretsError, unseal
from .signing import SignatureError, verify

log = logging.getLogger(__name__)

SUBMIT_RETRY_MAX_S = 300
# Seconds between attempts to send a submission's events while the broker is away.
EVENT_SEND_BACKOFF_S = (0.5, 1, 2, 4)


# The jobs this worker submitted that are still queued on their target, asked about soon.
follow_ups = FollowUps(send=lambda events: send_events(app, events), executor=get_executor)

# Messages refused by this worker, by kind: a forged or replayed message is never acted on.
refused: Counter[str] = Counter()


def _verified(kind: str, envelope) -> dict | None:
    """The body of a signed message for this worker's pool, or None (logged) when it must
    not be acted on."""
    pool = os.environ.get("ORCH_POOL", "")
    try:
        return verify(envelope, kind, pool, keys=list(credential.current().pool_keys))
    except SignatureError as exc:
        refused[kind] += 1
        body = envelope.get("body", envelope) if isinstance(envelope, dict) else None
        # The claimed process id only, cut short: the rest of the message is not trusted.
        claimed = str(body.get("process_id", ""))[:64] if isinstance(body, dict) else ""
        log.warning("refused a %s message%s on pool %s: %s (%d refused)", kind,
                    f" for process {claimed!r}" if claimed else "", pool, exc, refused[kind])
        return None


@app.task(name=TASK_SUBMIT, bind=True, max_retries=None)
def submit(self, envelope: dict) -> str | None:
    if (spec_data := _verified("spec", envelope)) is None:
        return None
    spec = JobSpec.from_dict(spec_data)
    source = f"worker:{self.request.hostname or spec.pool}"
    try:
        executor = get_executor(spec.target, spec.pool, spec.pool_settings)
        if not executor.opens_secrets:
            opened = unseal(spec.secret_env, process_id=spec.process_id, pool=spec.pool)
            spec.env, spec.secret_env = {**spec.env, **opened}, ""
        asked_at = time.time()
        submission = executor.submit(spec)
    except ExecutorError as exc:
        if not exc.permanent:
            countdown = min(2 ** self.request.retries, SUBMIT_RETRY_MAX_S)
            log.warning("submit of %s failed, retry in %s s: %s", spec.process_id, countdown, exc)
            raise self.retry(exc=exc, countdown=countdown) from exc
        _fail(spec, source, exc)
        return None
    # Secrets this worker cannot open, an unknown target: retrying can never help.
    except (SecretsError, ValueError) as exc:
        _fail(spec, source, exc)
        return None
    # The worker's own file system refused a step (a file gone between a listing and its
    # stat): retried, never dropped; finding the job first keeps a retry from starting two.
    except OSError as exc:
        countdown = min(2 ** self.request.retries, SUBMIT_RETRY_MAX_S)
        log.warning("submit of %s failed, retry in %s s: %r", spec.process_id, countdown, exc)
        raise self.retry(exc=exc, countdown=countdown) from exc
    host = submission.host or executor.host
    # Built once, as the target answers: resent after a broker outage, they keep that time.
    # SUBMITTED when the target was asked; a start at the time the target gives, if it does.
    events = [Event(spec.process_id, source, state=State.SUBMITTED, handle=submission.handle,
                    host=host, message=submission.message, attempt=spec.attempt, at=asked_at)]
    if submission.state != State.SUBMITTED:
        started = submission.started_at
        at = started if started and asked_at <= started <= time.time() else time.time()
        events.append(Event(spec.process_id, source, state=submission.state,
                            handle=submission.handle, host=host, attempt=spec.attempt, at=at))
    _send_or_requeue(spec, events)
    if submission.state == State.SUBMITTED:  # queued on the target: see its start soon
        follow_ups.follow(pool=spec.pool, target=spec.target, settings=spec.pool_settings,
                          item=PollItem(spec.process_id, submission.handle,
                                        submitted_at=time.time(), attempt=spec.attempt),
                          source=source)
    return submission.handle


def _fail(spec: JobSpec, source: str, reason: Exception) -> None:
    """The process ends FAILED with the reason its job could not be started."""
    _send_or_requeue(spec, [Event(spec.process_id, source, state=State.FAILED,
                                  message=str(reason), attempt=spec.attempt)])


def _send_or_requeue(spec: JobSpec, events: list[Event]) -> None:
    """Send a submission's events, trying again for a few seconds while the broker is away.
    If they still cannot be sent, the job spec is rejected back to its queue rather than
    acknowledged: acknowledging it would leave its process QUEUED, its job running unseen."""
    for pause in (*EVENT_SEND_BACKOFF_S, None):
        try:
            send_events(app, events)
            return
        except Exception as exc:  # kombu raises several kinds; every one means "not sent"
            if pause is None:
                log.warning("events of %s not sent, job spec requeued: %s", spec.process_id, exc)
                raise Reject(str(exc), requeue=True) from exc
            log.warning("events of %s not sent, again in %s s: %s", spec.process_id, pause, exc)
            time.sleep(pause)


@app.task(name=TASK_POLL, acks_late=False)
def poll(envelope: dict) -> int:
    """Answer for every handle of the request with one batched target call.

    A poll that arrives while this worker still runs the previous poll of the same handles
    (a throttled API retrying with backoff) is dropped: it would ask the same question again
    and hold one more slot, until polls fill every slot and no submission is served. The
    running poll answers; the next round asks again."""
    if (request_data := _verified("poll", envelope)) is None:
        return 0
    request = PollRequest.from_dict(request_data)
    key = (request.pool, request.host, request.items[0].process_id if request.items else "")
    with _polls_lock:
        if key in _polls_running:
            log.info("poll of pool %s dropped: its previous poll still runs", request.pool)
            return 0
        _polls_running.add(key)
    try:
        return _poll(request)
    finally:
        with _polls_lock:
            _polls_running.discard(key)


# The polls running in this worker, by (pool, host, first process id of the batch).
_polls_running: set[tuple[str, str | None, str]] = set()
_polls_lock = threading.Lock()


@app.task(name=TASK_CANCEL)
def cancel(envelope: dict) -> int:
    """A poll whose items all ask for a stop: the stop is carried out and reported at once."""
    if (request_data := _verified("cancel", envelope)) is None:
        return 0
    request = PollRequest.from_dict(request_data)
    for item in request.items:
        item.stop_requested = True
    return _poll(request)


def _poll(request: PollRequest) -> int:
    executor = get_executor(request.target, request.pool, request.pool_settings)
    if not request.items:  # a pool with nothing live: its settings, for the cluster check
        return 0
    began = time.monotonic()
    try:
        events = executor.poll(request.items)
    except ExecutorError as exc:  # a failed poll decides nothing; the next round asks again
        poll_stats.record(request.pool, time.monotonic() - began, failed=True)
        log.warning("poll of pool %s failed: %s", request.pool, exc)
        return 0
    poll_stats.record(request.pool, time.monotonic() - began, failed=False)
    try:
        send_events(app, events)
    except Exception as exc:  # the broker is away: release nothing, the next round asks again
        log.warning("events of a poll of pool %s not sent: %s", request.pool, exc)
        return 0
    handles = {item.process_id: item.handle for item in request.items}
    for event in events:
        if event.state and is_terminal(event.state):
            try:
                executor.release(handles[event.process_id])
            except ExecutorError as exc:
                log.warning("release of %s failed: %s", handles[event.process_id], exc)
    _reap_orphans(executor, request)
    return len(events)


# Seconds between two orphan sweeps of one pool on this worker.
REAP_EVERY_S = 60
_last_reap: dict[str, float] = {}


def _reap_orphans(executor, request: PollRequest) -> None:
    """Targets that list their jobs by our label (Docker) remove the jobs no polled process
    claims, after the executor's own grace period. Only a request that lists every live
    handle of the pool can tell an orphan from a job of another batch."""
    reap = getattr(executor, "reap_orphans", None)
    now = time.monotonic()
    recent = now - _last_reap.get(request.pool, -REAP_EVERY_S) < REAP_EVERY_S
    if reap is None or not request.complete or recent:
        return
    _last_reap[request.pool] = now
    try:
        reaped = reap({item.process_id for item in request.items})
    except ExecutorError as exc:
        log.warning("orphan sweep of pool %s failed: %s", request.pool, exc)
        return
    if reaped:
        log.warning("pool %s: removed orphaned jobs of processes %s", request.pool, reaped)
