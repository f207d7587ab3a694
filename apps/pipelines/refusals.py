"""Counting what the control plane refused to believe on ``control`` (``RefusedReport``): a
forged or misdirected message is never applied, and an operator still sees that it came.

Counted by a reason from a short fixed list, so a flood of forged messages adds to a few rows
and never grows the table; the claimed sender of the last one is kept beside its count.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from apps.pipelines.models import RefusedReport

log = logging.getLogger(__name__)

DETAIL_MAX = 500


def refusals_count(counts: Mapping[str, int], detail: str) -> None:
    """Add ``counts`` (reason -> how many) to the totals: one update per reason."""
    now, detail = timezone.now(), detail[:DETAIL_MAX]
    for reason, count in counts.items():
        rows = RefusedReport.objects.filter(reason=reason)
        if rows.update(count=F("count") + count, last_seen=now, last_detail=detail):
            continue
        try:
            with transaction.atomic():
                RefusedReport.objects.create(reason=reason, count=count, last_seen=now,
                                             last_detail=detail)
        except IntegrityError:  # another consumer thread counted the first one meanwhile
            rows.update(count=F("count") + count, last_seen=now, last_detail=detail)


def refusals_report() -> dict[str, dict]:
    """Every reason counted so far: its count, when the last one came and what it claimed."""
    return {row.reason: {"count": row.count, "last_seen": row.last_seen.isoformat(),
                         "last_detail": row.last_detail}
            for row in RefusedReport.objects.all()}


def message_refused(kind: str, why: str, envelope) -> None:
    """Log and count a whole message on ``control`` that is not believed (``why``: one of the
    fixed reasons of ``workers.signing.verify_report``, or "malformed body")."""
    claimed = claimed_by(envelope)
    log.warning("refused a %s message: %s; it %s", kind, why, claimed)
    refusals_count({f"{kind} message: {why}": 1}, claimed)


def claimed_by(envelope) -> str:
    """Who a message says it is from, cut short: nothing of it is trusted."""
    if isinstance(envelope, dict):
        return (f"claims worker {_cut(envelope.get('worker'))} of pool "
                f"{_cut(envelope.get('pool'))}")
    if isinstance(envelope, list):  # the events of a worker from before signed events
        first = envelope[0] if envelope and isinstance(envelope[0], dict) else {}
        return (f"is a plain list of {len(envelope)} events, the first for process "
                f"{_cut(first.get('process_id'))} from {_cut(first.get('source'))}")
    return f"is a {type(envelope).__name__}"


def _cut(value) -> str:
    return repr(str(value)[:64])
