"""Writing pipelines and pools: loading the files under PIPELINES_DIR into the database."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.models import Action
from apps.audit.services import audit_record
from apps.pipelines.definitions import PipelineDefinition, parse_pipeline, parse_pool
from apps.pipelines.errors import DefinitionError
from apps.pipelines.models import Pipeline, PipelineVersion, Pool, ServiceHeartbeat, Worker
from apps.pipelines.refusals import message_refused
from apps.pipelines.resources import pipeline_over_pool, sbatch_over_pool
from apps.teams.access import Caller
from workers.contract import Heartbeat, this_host
from workers.signing import SignatureError, master_keys, verify_report

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)  # "hello v2": new versions
    unchanged: list[str] = field(default_factory=list)
    pools: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # file name -> reason
    retired: list[str] = field(default_factory=list)  # pipelines whose file is gone


def pipelines_load(directory: Path | str | None = None) -> LoadReport:
    """Load every pool and pipeline file. A broken file is reported and skipped; the others
    still load. An edited pipeline becomes a new version; an unchanged one is left alone."""
    directory = Path(directory or settings.PIPELINES_DIR)
    report = LoadReport()
    for path in sorted((directory / "pools").glob("*.yaml")):
        try:
            _pool_save(parse_pool(path))
            report.pools.append(path.stem)
        except DefinitionError as exc:
            report.errors[f"pools/{path.name}"] = str(exc)
    seen = set()
    for path in sorted(directory.glob("*.yaml")):
        try:
            definition = parse_pipeline(path)
            seen.add(definition.name)
            version, created = _version_save(definition)
        except DefinitionError as exc:
            seen.add(path.stem)  # a broken file still claims its pipeline: do not retire it
            report.errors[path.name] = str(exc)
            continue
        (report.loaded if created else report.unchanged).append(str(version))
    retired = Pipeline.objects.filter(active=True).exclude(name__in=seen)
    report.retired = list(retired.values_list("name", flat=True))
    retired.update(active=False)
    for name, reason in report.errors.items():
        log.error("pipeline file %s not loaded: %s", name, reason)
    return report


def _pool_save(definition) -> Pool:
    # ``paused`` is not the file's: a pool an operator paused stays paused when files load.
    pool, _ = Pool.objects.update_or_create(
        name=definition.name,
        defaults={
            "target": definition.target,
            "capacity": definition.capacity,
            "settings": definition.settings,
            "queued_limit_s": definition.queued_limit_s,
            "host_lost_after_s": definition.host_lost_after_s,
            "teams": definition.teams,
            "quotas": definition.quotas,
            "weights": definition.weights,
            "max_resources": definition.max_resources,
            "images": definition.images,
            "gpu_devices": definition.gpu_devices,
            "sbatch": definition.sbatch,
            "allow_sbatch": definition.allow_sbatch,
            "source_file": definition.source_file,
        },
    )
    return pool


@transaction.atomic
def _version_save(definition: PipelineDefinition) -> tuple[PipelineVersion, bool]:
    pool = Pool.objects.filter(name=definition.pool).first()
    if pool is None:
        raise DefinitionError(f"pool: {definition.pool!r} has no file pipelines/pools/"
                              f"{definition.pool}.yaml")
    if pool.target != definition.target:
        raise DefinitionError(f"pool: {pool.name!r} runs {pool.target}, not {definition.target}")
    if over := pipeline_over_pool(definition.resources, pool):
        raise DefinitionError("; ".join(over))
    if refused := sbatch_over_pool(definition, pool):
        raise DefinitionError("; ".join(refused))
    pipeline, _ = Pipeline.objects.get_or_create(name=definition.name)
    locked = Pipeline.objects.select_for_update(of=("self",)).select_related("latest_version")
    pipeline = locked.get(pk=pipeline.pk)
    latest = pipeline.latest_version
    if latest is not None and latest.digest == definition.digest:
        if not pipeline.active:
            pipeline.active = True
            pipeline.save(update_fields=["active"])
        return latest, False
    version = PipelineVersion.objects.create(
        pipeline=pipeline,
        number=(latest.number + 1) if latest else 1,
        label=definition.label,
        digest=definition.digest,
        description=definition.description,
        target=definition.target,
        pool=pool,
        run=definition.run,
        resources=definition.resources,
        config_schema=definition.config_schema,
        defaults=definition.defaults,
        secrets=definition.secrets,
        retry=definition.retry,
        allow=definition.allow or {},
        sbatch=definition.sbatch or {},
        source_file=definition.source_file,
    )
    pipeline.latest_version = version
    pipeline.active = True
    pipeline.save(update_fields=["latest_version", "active"])
    return version, True


def worker_heartbeat_receive(envelope) -> bool:
    """Record a worker's signed heartbeat under the identity its signature proves (pool, host,
    name); an unsigned, forged or malformed one is logged and counted, not recorded."""
    try:
        sender, body = verify_report(envelope, "heartbeat", masters=master_keys(create=True))
        beat = Heartbeat(**{**body, "pool": sender.pool, "host": sender.host,
                            "name": sender.worker})
    except SignatureError as exc:
        message_refused("heartbeat", str(exc), envelope)
        return False
    except TypeError:  # signed, yet not a heartbeat: a worker's bug
        message_refused("heartbeat", "malformed body", envelope)
        return False
    worker_heartbeat(beat)
    return True


def worker_heartbeat(beat) -> None:
    """Record that a worker of a pool is alive (a ``workers.contract.Heartbeat``)."""
    Worker.objects.update_or_create(
        pool=beat.pool, host=beat.host, name=beat.name,
        defaults={"target": beat.target, "version": beat.version, "capacity": beat.capacity,
                  "busy": beat.busy, "polls": poll_counts(beat.polls),
                  "last_seen": datetime.fromtimestamp(beat.at, UTC),
                  "cluster": _cluster_report(beat.cluster)},
    )


POLL_COUNTS = ("cycles", "failures", "seconds", "last_seconds")


def poll_counts(polls) -> dict:
    """The poll counts of a heartbeat, only the known ones and only numbers: what a worker
    sends is kept as it is shown, so nothing else rides along."""
    if not isinstance(polls, dict):
        return {}
    return {key: polls[key] for key in POLL_COUNTS
            if isinstance(polls.get(key), int | float) and not isinstance(polls[key], bool)
            and 0 <= polls[key] < 1e15}


def _cluster_report(report) -> dict | None:
    """A worker's word on its cluster, kept to the fields and sizes shown (it is signed by the
    worker, but a worker's bug must not fill the database)."""
    if not isinstance(report, dict):
        return None
    version = report.get("rest_api_version")
    return {"reachable": report.get("reachable") is True,
            "rest_api_version": str(version)[:20] if version else None,
            "detail": str(report.get("detail") or "")[:500]}


def service_heartbeat(name: str) -> None:
    """Record that this process, a part of the control plane (``ServiceHeartbeat.CONTROL`` or
    ``BEAT``), is alive now."""
    ServiceHeartbeat.objects.update_or_create(
        name=name, host=this_host(), defaults={"pid": os.getpid(), "last_seen": timezone.now()},
    )


def pool_pause(pool: Pool, *, paused: bool = True, actor: Caller | None = None) -> bool:
    """Pause (or, with ``paused=False``, resume) ``pool``; False when it already was. A paused
    pool admits nothing new; its running jobs go on. A resumed pool admits at once. A change
    is audited as ``actor``'s (a pool is no team's: superusers read those entries)."""
    from apps.processes import relay  # processes depend on pipelines

    with transaction.atomic():
        changed = Pool.objects.filter(pk=pool.pk).exclude(paused=paused).update(
            paused=paused, updated_at=timezone.now())
        if changed:
            audit_record(actor, Action.POOL_PAUSE if paused else Action.POOL_RESUME,
                         target=f"pool {pool.name}")
        if changed and not paused:
            relay.wake()  # the relay admits on it once this commits
    pool.paused = paused
    return bool(changed)


def pipeline_versions_withdraw(versions, *, withdrawn: bool = True) -> int:
    """Withdraw (or, with ``withdrawn=False``, restore) the given versions; returns how many
    changed. A withdrawn version starts no new run and no re-run; the processes that ran it
    keep pointing at it, and the API still lists it (``withdrawn: true``)."""
    return versions.exclude(withdrawn=withdrawn).update(withdrawn=withdrawn)
