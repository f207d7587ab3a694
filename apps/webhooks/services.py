"""Webhooks: registering receivers, recording a delivery with each transition (in the
transition's own transaction, so none is lost and none is sent for a rolled-back change), and
sending what is due from the beat's housekeeping, never on the event path: a slow or dead
receiver delays only its own deliveries."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.processes.models import Process
from apps.teams.access import Caller
from apps.webhooks.models import Callback, Delivery, Webhook
from apps.webhooks.receivers import ReceiverRefused, receiver_check
from apps.webhooks.signing import SIGNATURE_HEADER, new_secret, signature
from workers.contract import is_terminal

log = logging.getLogger(__name__)

# Deliveries claimed per round, and how long a claim holds before another round may retry.
CLAIM_BATCH = 20
CLAIM_LEASE_S = 60


def webhook_create(team, url: str, events: str, actor: Caller | None) -> tuple[Webhook, str]:
    """A team's new receiver and its secret (returned once)."""
    secret = new_secret()
    hook = Webhook.objects.create(team=team, url=url, events=events, secret=secret,
                                  created_by=actor.label if actor is not None else "")
    return hook, secret


def callback_register(process: Process, url: str) -> str:
    """A process's own receiver; returns the secret its deliveries are signed with."""
    secret = new_secret()
    Callback.objects.create(process=process, url=url, secret=secret)
    return secret


def deliveries_record(process: Process, from_state: str, to_state: str,
                      at: datetime) -> int:
    """Record a delivery to every receiver of ``process`` that wants this transition. Called
    by the state writer inside the transition's transaction."""
    ended = is_terminal(to_state)
    hooks = Webhook.objects.filter(team_id=process.team_id) if process.team_id else []
    urls: list[tuple[Webhook | None, str]] = [
        (hook, hook.url) for hook in hooks if ended or hook.events == Webhook.ALL]
    if ended:
        callback = Callback.objects.filter(process_id=process.pk).first()
        if callback is not None:
            urls.append((None, callback.url))
    now = timezone.now()
    Delivery.objects.bulk_create(
        Delivery(team_id=process.team_id, webhook=hook, process_id=process.pk, url=url,
                 from_state=from_state, to_state=to_state, happened_at=at,
                 next_attempt_at=now)
        for hook, url in urls)
    return len(urls)


def deliveries_record_many(moves: list[tuple[Process, datetime]], from_state: str,
                           to_state: str) -> int:
    """``deliveries_record`` for many processes making the same transition (each with its
    time), in one read of the receivers and one insert."""
    ended = is_terminal(to_state)
    teams = {process.team_id for process, _ in moves if process.team_id}
    hooks: dict[int | None, list[Webhook]] = defaultdict(list)
    for hook in Webhook.objects.filter(team_id__in=teams) if teams else []:
        if ended or hook.events == Webhook.ALL:
            hooks[hook.team_id].append(hook)
    callbacks = dict(Callback.objects.filter(process_id__in=[p.pk for p, _ in moves])
                     .values_list("process_id", "url")) if ended else {}
    now = timezone.now()
    rows = []
    for process, at in moves:
        urls: list[tuple[Webhook | None, str]] = [
            (hook, hook.url) for hook in hooks.get(process.team_id, [])]
        if process.pk in callbacks:
            urls.append((None, callbacks[process.pk]))
        rows += [Delivery(team_id=process.team_id, webhook=hook, process_id=process.pk,
                          url=url, from_state=from_state, to_state=to_state, happened_at=at,
                          next_attempt_at=now) for hook, url in urls]
    Delivery.objects.bulk_create(rows)
    return len(rows)


# One round at a time in a process: the control consumer's threads also apply events, and a
# slow or dead receiver must hold one of them at most (for a round's budget and one send).
_round = threading.Lock()


def deliveries_send(budget_s: float | None = None) -> int:
    """Send the deliveries that are due, until none is left or ``budget_s`` has passed (then
    the rest of the claimed batch is left due for the next round). Returns how many were sent
    (answered 2xx); 0 at once while another thread of this process is in a round."""
    if not _round.acquire(blocking=False):
        return 0
    try:
        return _send_due(time.monotonic() + (
            settings.WEBHOOK_ROUND_S if budget_s is None else budget_s))
    finally:
        _round.release()


def _send_due(deadline: float) -> int:
    sent = 0
    while time.monotonic() < deadline:
        claimed = _claim()
        if not claimed:
            break
        for index, delivery in enumerate(claimed):
            if time.monotonic() >= deadline:
                _unclaim(claimed[index:])
                return sent
            sent += _send(delivery)
    return sent


def _claim() -> list[Delivery]:
    """Due deliveries, leased to this round so a concurrent round skips them."""
    now = timezone.now()
    with transaction.atomic():
        due = list(Delivery.objects.select_for_update(skip_locked=True)
                   .filter(state=Delivery.PENDING, next_attempt_at__lte=now)
                   .order_by("next_attempt_at")[:CLAIM_BATCH])
        Delivery.objects.filter(pk__in=[d.pk for d in due]).update(
            next_attempt_at=now + timedelta(seconds=CLAIM_LEASE_S))
    return due


def _unclaim(deliveries: list[Delivery]) -> None:
    """Give back the lease on ``deliveries``: due again now, as they were before the claim."""
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries], state=Delivery.PENDING).update(
        next_attempt_at=timezone.now())


def payload(delivery: Delivery) -> dict:
    """The JSON a receiver gets: the transition, and the process as it is now (or as the
    delivery remembers it, once the process is deleted)."""
    described: dict[str, object] = {"id": str(delivery.process_id)}
    body = {"delivery": delivery.pk, "event": "process.ended" if is_terminal(delivery.to_state)
            else "process.transition",
            "process": described,
            "from_state": delivery.from_state, "to_state": delivery.to_state,
            "at": delivery.happened_at.isoformat()}
    process = (Process.objects.select_related("pipeline", "team")
               .filter(pk=delivery.process_id).first())
    if process is not None:
        described.update(
            pipeline=process.pipeline.name, state=process.state, exit_code=process.exit_code,
            message=process.message, pool=process.pool,
            team=process.team.slug if process.team else None,
            created_at=process.created_at.isoformat(),
            finished_at=process.finished_at.isoformat() if process.finished_at else None)
    return body


def _secret(delivery: Delivery) -> str | None:
    """The key that signs ``delivery``: its webhook's, or its process's callback's (None once
    the process was deleted, and its callback with it)."""
    if delivery.webhook is not None:
        return delivery.webhook.secret
    callback = Callback.objects.filter(process_id=delivery.process_id).first()
    return callback.secret if callback is not None else None


def _send(delivery: Delivery) -> int:
    secret = _secret(delivery)
    if secret is None:  # nothing the receiver could verify: never sent unsigned
        Delivery.objects.filter(pk=delivery.pk).update(
            state=Delivery.FAILED, next_attempt_at=None,
            last_error="not sent: its process was deleted, and with it the callback's secret")
        return 0
    body = json.dumps(payload(delivery), sort_keys=True).encode()
    status, error = None, ""
    try:
        receiver_check(delivery.url, resolve=True)
        answer = requests.post(
            delivery.url, data=body, timeout=settings.WEBHOOK_TIMEOUT_S, allow_redirects=False,
            headers={"Content-Type": "application/json", "User-Agent": "orchestration-webhook",
                     "X-Orch-Delivery": str(delivery.pk),
                     SIGNATURE_HEADER: signature(secret, body, int(time.time()))})
        status = answer.status_code
        if not 200 <= status < 300:
            error = f"answered {status}"
    except (requests.RequestException, ReceiverRefused) as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
    _record(delivery, status, error)
    return 0 if error else 1


def _record(delivery: Delivery, status: int | None, error: str) -> None:
    now = timezone.now()
    attempts = delivery.attempts + 1
    fields: dict = {"attempts": attempts, "last_status": status, "last_error": error}
    if not error:
        fields.update(state=Delivery.DELIVERED, delivered_at=now, next_attempt_at=None)
    elif now - delivery.created_at > timedelta(seconds=settings.WEBHOOK_RETRY_FOR_S):
        fields.update(state=Delivery.FAILED, next_attempt_at=None)
        log.warning("webhook delivery %s to %s given up after %d attempts: %s", delivery.pk,
                    delivery.url, attempts, error)
    else:
        backoff = min(settings.WEBHOOK_BACKOFF_S * 2 ** (attempts - 1), 600)
        fields.update(next_attempt_at=now + timedelta(seconds=backoff))
    Delivery.objects.filter(pk=delivery.pk).update(**fields)
