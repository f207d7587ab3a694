"""What `/metrics` says, read from the database when Prometheus scrapes.

Every figure comes from the rows the control plane already keeps (processes, events, workers,
pools), so any web process answers the same and nothing is lost when one restarts. The
histograms count every process (and event) still kept: they only grow, until retention
purges old rows, which Prometheus's ``rate()`` reads as a counter reset.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.expressions import Combinable
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from apps.pipelines.models import Pool
from apps.pipelines.selectors import live_workers
from apps.processes.admission import holding, waiting_on
from apps.processes.models import Process, ProcessEvent

# Seconds from a POST to RUNNING, and a run's length: from a no-op's second to a day.
WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
RUN_BUCKETS = (1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 7 * 24 * 3600)
# Seconds from what a worker saw to the control plane recording it.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


class OrchestrationCollector(Collector):
    """The control plane's figures, one query per family."""

    def collect(self) -> Iterator[Metric]:
        yield self.processes()
        yield from self.pools()
        yield self.workers()
        yield from self.polls()
        yield self.histogram(
            "orch_process_wait_seconds",
            "Seconds from a process's creation to RUNNING, by pool.",
            Process.objects.filter(started_at__isnull=False),
            F("started_at") - F("created_at"), WAIT_BUCKETS, ("pool",))
        yield self.histogram(
            "orch_process_run_seconds",
            "Seconds a process ran, from RUNNING to its end, by pool and final state.",
            Process.objects.filter(started_at__isnull=False, finished_at__isnull=False),
            F("finished_at") - F("started_at"), RUN_BUCKETS, ("pool", "state"))
        yield self.histogram(
            "orch_event_lag_seconds",
            "Seconds from what a worker saw to the control plane recording it, by new state.",
            ProcessEvent.objects.all(), F("recorded_at") - F("at"), LAG_BUCKETS,
            ("to_state",))

    @staticmethod
    def processes() -> GaugeMetricFamily:
        family = GaugeMetricFamily("orch_processes", "Processes by state, pool and team.",
                                   labels=("state", "pool", "team"))
        rows = (Process.objects.values("state", "pool", "team__slug")
                .annotate(n=Count("id")).order_by())
        for row in rows:
            family.add_metric((row["state"], row["pool"], row["team__slug"] or ""), row["n"])
        return family

    @staticmethod
    def pools() -> Iterator[GaugeMetricFamily]:
        capacity = GaugeMetricFamily("orch_pool_capacity",
                                     "Most processes a pool has on its target at once.",
                                     labels=("pool",))
        paused = GaugeMetricFamily("orch_pool_paused", "1 while a pool is paused.",
                                   labels=("pool",))
        held = GaugeMetricFamily("orch_pool_running",
                                 "Slots held: processes admitted and not ended.",
                                 labels=("pool",))
        waiting = GaugeMetricFamily("orch_pool_waiting", "Processes waiting for admission.",
                                    labels=("pool",))
        held_by = _count_by(holding(), "pool")
        waiting_by = _count_by(waiting_on(), "pool")
        for pool in Pool.objects.order_by("name"):
            capacity.add_metric((pool.name,), pool.capacity)
            paused.add_metric((pool.name,), int(pool.paused))
            held.add_metric((pool.name,), held_by.get(pool.name, 0))
            waiting.add_metric((pool.name,), waiting_by.get(pool.name, 0))
        yield from (capacity, paused, held, waiting)

    @staticmethod
    def workers() -> GaugeMetricFamily:
        family = GaugeMetricFamily("orch_workers_alive",
                                   "Workers whose last heartbeat is within the bound, by pool.",
                                   labels=("pool",))
        for pool, count in sorted(_count_by(live_workers(), "pool").items()):
            family.add_metric((pool,), count)
        return family

    @staticmethod
    def polls() -> Iterator[Metric]:
        """Each live worker's poll cycles of its pool's target, as its heartbeat counts them."""
        labels = ("pool", "worker")
        cycles = CounterMetricFamily("orch_poll_cycles",
                                     "Polls of the target a worker made, by pool.", labels=labels)
        failures = CounterMetricFamily("orch_poll_failures",
                                       "Polls the target did not answer, by pool.",
                                       labels=labels)
        seconds = CounterMetricFamily("orch_poll_seconds",
                                      "Seconds spent asking the target in polls, by pool.",
                                      labels=labels)
        last = GaugeMetricFamily("orch_poll_last_cycle_seconds",
                                 "Seconds the latest poll of the target took, by pool.",
                                 labels=labels)
        for worker in live_workers().order_by("pool", "host", "name"):
            counts = worker.polls or {}
            key = (worker.pool, worker.name or worker.host)
            cycles.add_metric(key, counts.get("cycles", 0))
            failures.add_metric(key, counts.get("failures", 0))
            seconds.add_metric(key, counts.get("seconds", 0.0))
            last.add_metric(key, counts.get("last_seconds", 0.0))
        yield from (cycles, failures, seconds, last)

    @staticmethod
    def histogram(name: str, documentation: str, rows: QuerySet, span: Combinable,
                  buckets: tuple[float, ...], labels: tuple[str, ...]) -> HistogramMetricFamily:
        """A histogram of ``span`` over ``rows``, grouped by ``labels``: one query, each
        bucket a filtered count."""
        family = HistogramMetricFamily(name, documentation, labels=labels)
        counts = {f"le_{i}": Count("pk", filter=Q(span__lte=timedelta(seconds=bound)))
                  for i, bound in enumerate(buckets)}
        grouped = (rows.annotate(span=ExpressionWrapper(span, output_field=DurationField()))
                   .values(*labels)
                   .annotate(total=Count("pk"), spent=Sum("span"), **counts).order_by())
        for row in grouped:
            cumulative = [(floatToGoString(bound), row[f"le_{i}"])
                          for i, bound in enumerate(buckets)]
            cumulative.append(("+Inf", row["total"]))
            spent = row["spent"] or timedelta(0)
            family.add_metric([str(row[label] or "") for label in labels], cumulative,
                              sum_value=spent.total_seconds())
        return family


def _count_by(rows: QuerySet, field: str) -> dict[str, int]:
    return {row[field]: row["n"] for row in rows.values(field).annotate(n=Count("pk")).order_by()}

