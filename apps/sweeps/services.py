"""Writing sweeps: create one (every run checked, then all inserted in one transaction) and
stop one. Views and the admin call these; the processes themselves move on as any process
does (admission, publish, worker events)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework.exceptions import APIException

from apps.audit.models import Action
from apps.audit.services import audit_record
from apps.datasets.config_fields import DatasetRef
from apps.datasets.models import Dataset, DatasetUse
from apps.datasets.refs import _dataset_id
from apps.pipelines.selectors import pipeline_version_get, pools_open_to
from apps.processes.input_limits import config_problems, idempotency_key_problems, value_problems
from apps.processes.models import Process, ProcessAttempt, ProcessEvent
from apps.processes.run_options import env_errors, image_errors, resource_errors, resources_asked
from apps.processes.services import (
    IdempotencyKeyReused,
    _refusal,
    idempotency_scope,
    merge_config,
    process_stop,
)
from apps.sweeps.bulk import rows_insert
from apps.sweeps.expand import GridError, grid_size
from apps.sweeps.models import Sweep
from apps.sweeps.publishing import publisher_wake
from apps.sweeps.quota import waiting_room_check
from apps.sweeps.runs import Runs, runs_check
from apps.teams.access import Caller
from apps.webhooks.models import Webhook
from apps.webhooks.services import deliveries_record
from workers.contract import State, is_terminal

# Rows per INSERT: big enough that 10,000 runs are a few statements, small enough that one
# batch of model objects is all the memory a sweep holds at once.
BATCH = 1000


class SweepTooLarge(APIException):
    """More runs than ORCH_SWEEP_MAX_SIZE: 413."""

    status_code = 413
    default_code = "too_large"


def sweep_create(
    *, pipeline: str, base_config: dict, configs: list[dict] | None = None,
    grid: dict[str, list] | None = None, version: int | None = None, team=None, owner=None,
    application=None, idempotency_key: str | None = None, actor: Caller | None = None,
    priority: int = 0, resources: dict | None = None, image: str = "",
    env: dict | None = None,
) -> tuple[Sweep, bool]:
    """Create a sweep of one process per config of ``configs``, or per combination of
    ``grid`` (exactly one of them), each config merged over ``base_config`` over the
    pipeline's defaults. All in one transaction, PENDING; admission takes them from there.

    Returns (sweep, created). An invalid run anywhere is a ValidationError naming it
    (``configs[17]``, ``grid.lr[1]``) and nothing is created; so is a sweep past
    ORCH_SWEEP_MAX_SIZE (SweepTooLarge, 413) or past the team's waiting quota on the pool
    (QuotaExceeded, 429). A used ``idempotency_key`` with the same request answers the first
    sweep; with another request, IdempotencyKeyReused (422)."""
    resources, env = resources or {}, env or {}
    size = _size_checked(base_config, configs, grid, idempotency_key or "", resources, env)
    request = {"pipeline": pipeline, "version": version, "team": team.pk if team else None,
               "base_config": base_config, "configs": configs, "grid": grid,
               "priority": priority, "resources": resources, "image": image, "env": env}
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    key = f"{idempotency_scope(owner, application)}/{idempotency_key}" if idempotency_key else None
    if key and (first := Sweep.objects.filter(idempotency_key=key).first()):
        return _replay(first, digest), False
    usable = pools_open_to(team)
    pipeline_version = pipeline_version_get(pipeline, version, pools=usable)
    if pipeline_version is None:  # unknown, withdrawn or closed: the selector says which
        raise ValidationError(dict([_refusal(pipeline, version, usable, team, actor)]))
    asked, unreadable = resources_asked(resources)
    errors = {"resources": unreadable or resource_errors(pipeline_version, asked),
              "image": image_errors(pipeline_version, image),
              "env": env_errors(pipeline_version, env)}
    if any(errors.values()):
        raise ValidationError({name: found for name, found in errors.items() if found})
    runs = Runs(merge_config(pipeline_version.defaults, base_config), configs, grid)
    refs = runs_check(runs, pipeline_version.config_schema, team)
    try:
        with transaction.atomic():
            waiting_room_check(pipeline_version.pool, team, size)
            sweep = Sweep.objects.create(
                team=team, owner=owner, application=application,
                pipeline=pipeline_version.pipeline, pipeline_version=pipeline_version,
                base_config=base_config, grid=grid, size=size, idempotency_key=key,
                request_digest=digest)
            template = {"pipeline": pipeline_version.pipeline,
                        "pipeline_version": pipeline_version, "owner": owner,
                        "application": application, "team": team, "resources": asked,
                        "image": image, "env": env, "target": pipeline_version.target,
                        "pool": pipeline_version.pool.name, "priority": priority,
                        "sweep": sweep}
            _processes_insert(sweep, runs, refs, template,
                              f"{pipeline_version} by {owner or application or 'anonymous'}")
            audit_record(actor, Action.SUBMIT, team=team, target=f"sweep {sweep.pk}",
                         detail={"pipeline": pipeline, "version": pipeline_version.number,
                                 "size": size})
            publisher_wake(pipeline_version.pool.name)
    except IntegrityError:
        if key and (first := Sweep.objects.filter(idempotency_key=key).first()):
            return _replay(first, digest), False  # the same key won a race a moment ago
        raise
    return sweep, True


def _size_checked(base_config: dict, configs: list[dict] | None, grid: dict | None,
                  idempotency_key: str, resources: dict, env: dict) -> int:
    """The number of runs asked; ValidationError naming the field that cannot be read, or
    SweepTooLarge past the cap."""
    if (configs is None) == (grid is None):
        raise ValidationError({"configs": ["Give either configs (a list of configs) or grid "
                                           "(a mapping of parameter to values), not both."]})
    found = {"base_config": config_problems(base_config, "base_config"),
             "Idempotency-Key": idempotency_key_problems(idempotency_key),
             "resources": value_problems(resources, "resources"),
             "env": value_problems(env, "env")}
    if grid is not None:
        found["grid"] = value_problems(grid, "grid")
    refused = {field: problems for field, problems in found.items() if problems}
    if refused:
        raise ValidationError(refused)
    try:
        size = len(configs) if configs is not None else grid_size(grid or {})
    except GridError as exc:
        raise ValidationError({exc.field: [str(exc)]}) from None
    if size == 0:
        raise ValidationError({"configs": ["configs: give at least one config."]})
    limit = settings.SWEEP_MAX_SIZE
    if size > limit:
        raise SweepTooLarge(f"A sweep of {size} runs is more than ORCH_SWEEP_MAX_SIZE "
                            f"({limit}) allows in one request; split it.")
    for index, config in enumerate(configs or []):
        if problems := config_problems(config, f"configs[{index}]"):
            raise ValidationError({f"configs[{index}]": problems})
    return size


def _replay(first: Sweep, digest: str) -> Sweep:
    if first.request_digest != digest:
        raise IdempotencyKeyReused(
            f"already used for sweep {first.pk} with another request; a retried request must "
            "repeat the first one, a new request needs a new key.")
    return first


def _processes_insert(sweep: Sweep, runs: Runs, refs: list[list[DatasetRef]],
                      template: dict[str, Any], detail: str) -> None:
    """Insert every run as a PENDING process with its first event and attempt, BATCH runs at
    a time, and the datasets each names (locked first, as a single create does). Each run is
    created a microsecond after the one before it: admission and the lists take them in the
    sweep's order."""
    datasets = _datasets_locked(refs, template["team"])
    start = timezone.now()
    batch: list[tuple[uuid.UUID, dict, Any]] = []
    for index, config in enumerate(runs):
        batch.append((uuid.uuid4(), config, start + timedelta(microseconds=index)))
        if len(batch) == BATCH:
            _batch_insert(batch, template, detail)
            batch = []
    if batch:
        _batch_insert(batch, template, detail)
    if datasets:  # rare: one row per dataset a run names
        ids = Process.objects.filter(sweep=sweep).order_by("created_at").values_list(
            "pk", flat=True)
        DatasetUse.objects.bulk_create(
            DatasetUse(process_id=pk, dataset=datasets[found], pointer=ref.pointer)
            for pk, run_refs in zip(ids, refs, strict=True) for ref in run_refs
            if (found := _dataset_id(ref.value)) is not None)  # every one is, by runs_check


def _datasets_locked(refs: list[list[DatasetRef]], team) -> dict[uuid.UUID, Dataset]:
    """The datasets the runs name, locked in id order; one deleted since runs_check is a
    ValidationError and the sweep rolls back."""
    ids = {found for run in refs for ref in run if (found := _dataset_id(ref.value))}
    if not ids:
        return {}
    present = Dataset.objects.filter(pk__in=ids, deleted_at__isnull=True, team=team)
    locked = {d.pk: d for d in present.select_for_update().order_by("pk")}
    if missing := ids - set(locked):
        raise ValidationError({"configs": [f"dataset {sorted(map(str, missing))[0]} was "
                                           "deleted meanwhile; nothing was created."]})
    return locked


def _batch_insert(batch: list[tuple[uuid.UUID, dict, Any]], template: dict[str, Any],
                  detail: str) -> None:
    rows_insert(Process, template, ("id", "used_config", "created_at"), batch)
    rows_insert(ProcessEvent, {"to_state": State.PENDING, "source": "api", "detail": detail},
                ("process_id", "at"), ((pk, at) for pk, _, at in batch))
    rows_insert(ProcessAttempt, {"number": 1}, ("process_id", "created_at"),
                ((pk, at) for pk, _, at in batch))


def sweep_stop(sweep: Sweep, source: str = "api", actor: Caller | None = None) -> int:
    """Stop every process of ``sweep`` that has not ended. The PENDING ones go STOPPED at
    once, in bulk (they never reached a target); the others through process_stop (STOPPING
    and a cancel to their host, or STOPPED before their target). Idempotent; returns how
    many it stopped or asked to stop."""
    stopped = _waiting_stop(sweep, source)
    for process in _unfinished(sweep).select_related("pipeline_version__pool", "team"):
        before = process.state
        after = process_stop(process, source=source, actor=actor)
        stopped += after.state != before
    audit_record(actor, Action.STOP, team=sweep.team, target=f"sweep {sweep.pk}",
                 detail={"stopped": stopped})
    return stopped


def _unfinished(sweep: Sweep) -> QuerySet[Process]:
    ended = [state.value for state in State if is_terminal(state)]
    return Process.objects.filter(sweep=sweep).exclude(state__in=ended)


@transaction.atomic
def _waiting_stop(sweep: Sweep, source: str) -> int:
    """PENDING processes: STOPPED in bulk, with their events, attempts and webhook
    deliveries. Their rows are locked first, so admission (which marks PENDING rows admitted)
    and a publish (which moves them QUEUED) wait and then find them STOPPED; a spec sent just
    before is cancelled when its worker's first event arrives, as after a single stop. The
    slots of those admitted free: admission runs once for the pool."""
    now = timezone.now()
    found = list(Process.objects.select_for_update().filter(
        sweep=sweep, state=State.PENDING).values_list("pk", "attempt", "admitted_at"))
    rows = [(pk, attempt) for pk, attempt, _ in found]
    if any(admitted is not None for _, _, admitted in found):
        publisher_wake(sweep.pipeline_version.pool.name)
    message = "stopped before it started"
    heard = Webhook.objects.filter(team=sweep.team).exists() if sweep.team_id else False
    for start in range(0, len(rows), BATCH):
        chunk = rows[start:start + BATCH]
        ids = [pk for pk, _ in chunk]
        Process.objects.filter(pk__in=ids).update(
            state=State.STOPPED, stop_requested_at=now, finished_at=now, updated_at=now,
            message=message)
        ProcessEvent.objects.bulk_create(
            ProcessEvent(process_id=pk, from_state=State.PENDING, to_state=State.STOPPED,
                         source=source, detail="stopped before it reached its target", at=now,
                         attempt=attempt) for pk, attempt in chunk)
        for attempt in {attempt for _, attempt in chunk}:  # a retry waits on a later one
            ProcessAttempt.objects.filter(
                process_id__in=[pk for pk, n in chunk if n == attempt], number=attempt,
            ).update(state=State.STOPPED, message=message, ended_at=now)
        if heard:  # the team's webhooks hear every end, as a single stop's would
            for pk in ids:
                deliveries_record(Process(pk=pk, team_id=sweep.team_id), State.PENDING,
                                  State.STOPPED, now)
    return len(rows)
