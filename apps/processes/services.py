"""Writing processes: create, publish, stop, re-run. Views, admin actions and tasks call
these and nothing else writes a process (worker events go through events.py)."""

from __future__ import annotations

import copy
import logging
import uuid
from typing import TypedDict

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apps.pipelines.definitions import config_errors
from apps.pipelines.selectors import pipeline_version_get, pipeline_version_refusal
from apps.processes import messaging
from apps.processes.input_limits import (
    config_problems,
    idempotency_key_problems,
    text_problems,
    value_problems,
)
from apps.processes.models import Process, ProcessEvent
from apps.processes.transitions import transition, transition_to_queued
from workers.contract import POLLED_STATES, State, is_terminal
from workers.secrets import SecretsError, seal, unseal

log = logging.getLogger(__name__)

# Bytes of one secret value at most (UTF-8): a token or a key file, not a data set.
SECRET_MAX_BYTES = 64 * 1024


def merge_config(defaults: dict, used: dict) -> dict:
    """The user's config over the pipeline's defaults; nested mappings merge key by key."""
    merged = copy.deepcopy(defaults)
    for key, value in used.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def secret_errors(declared: list[str], secrets: dict) -> list[str]:
    """Every way ``secrets`` breaks the names its pipeline version declares, each naming its
    place (``secrets.API_TOKEN``). No message repeats a value."""
    errors = []
    for name, value in sorted(secrets.items()):
        where = f"secrets.{name}"
        if name not in declared:
            errors.append(f"{where}: not declared by the pipeline; it declares "
                          f"{', '.join(declared) or 'no secrets'}.")
        elif not isinstance(value, str):
            errors.append(f"{where}: must be a string, not {type(value).__name__}.")
        elif len(value.encode()) > SECRET_MAX_BYTES:
            errors.append(f"{where}: longer than {SECRET_MAX_BYTES} bytes.")
        else:  # an environment value cannot hold a NUL: the job would not start
            errors.extend(text_problems(value, where))
    return errors


def idempotency_scope(owner, application) -> str:
    return f"app-{application.pk}" if application is not None else f"user-{owner.pk}"


class _Request(TypedDict):
    """What a create asked, as ``_replay`` compares it with the first process of its key."""

    pipeline: str
    version: int | None
    used_config: dict
    secrets: dict | None


class IdempotencyKeyReused(Exception):
    """An Idempotency-Key already used by this client came with another request."""


def _replay(first: Process, *, pipeline: str, version: int | None, used_config: dict,
            secrets: dict | None) -> Process:
    """``first`` when the request is the one that created it; raises IdempotencyKeyReused
    naming what differs otherwise. Compared as the run would be: the pipeline, the version
    when one is named, the config merged over the first run's defaults, and the secrets."""
    differs = []
    if first.pipeline.name != pipeline:
        differs.append("pipeline")
    if version is not None and first.pipeline_version.number != version:
        differs.append("version")
    if merge_config(first.pipeline_version.defaults, used_config) != first.used_config:
        differs.append("used_config")
    if (secrets or {}) != unseal(first.secret_env, process_id=first.pk, pool=first.pool):
        differs.append("secrets")
    if differs:
        raise IdempotencyKeyReused(
            f"already used for process {first.pk} with another {', '.join(differs)}; "
            "a retried request must repeat the first one, a new request needs a new key.")
    return first


# Kept out of error reports: every local (``request`` holds the secrets too) and, as the
# nearest marked caller, every variable of what it calls (seal's ``values``).
@sensitive_variables()
def process_create(
    *, pipeline: str, used_config: dict, secrets: dict | None = None,
    owner=None, application=None, version: int | None = None,
    idempotency_key: str | None = None, source: str = "api",
) -> tuple[Process, bool]:
    """Validate and persist a run, then publish it once the row is committed.

    ``secrets`` are plain values, checked here and sealed for the new process and its pool.
    Returns (process, created). With an ``idempotency_key`` already used by this client for
    the same request, the first process is returned and nothing is created; for another
    request, IdempotencyKeyReused. Raises ValidationError naming the field.
    """
    refused = _input_problems(used_config, secrets or {}, idempotency_key or "")
    if refused:  # before anything reads, compares or stores what the database cannot hold
        raise ValidationError(refused)
    key = f"{idempotency_scope(owner, application)}/{idempotency_key}" if idempotency_key else None
    request: _Request = {"pipeline": pipeline, "version": version, "used_config": used_config,
               "secrets": secrets}
    if key and (first := Process.objects.filter(idempotency_key=key).first()):
        return _replay(first, **request), False
    pipeline_version = pipeline_version_get(pipeline, version)
    if pipeline_version is None:  # unknown, or withdrawn: the selector says which
        field, message = pipeline_version_refusal(pipeline, version)
        raise ValidationError({field: [message]})
    config = merge_config(pipeline_version.defaults, used_config)
    errors = {"used_config": config_errors(pipeline_version.config_schema, config),
              "secrets": secret_errors(pipeline_version.secrets, secrets or {})}
    if any(errors.values()):
        raise ValidationError({name: found for name, found in errors.items() if found})
    # The id is chosen here, not by the insert: the secrets are sealed for it.
    process_id = uuid.uuid4()
    secret_env = seal(secrets, process_id=process_id,
                      pool=pipeline_version.pool.name) if secrets else ""
    try:
        with transaction.atomic():
            process = Process.objects.create(
                id=process_id,
                pipeline=pipeline_version.pipeline,
                pipeline_version=pipeline_version,
                owner=owner,
                application=application,
                used_config=config,
                secret_env=secret_env,
                target=pipeline_version.target,
                pool=pipeline_version.pool.name,
                idempotency_key=key,
            )
            ProcessEvent.objects.create(
                process=process, to_state=State.PENDING, source=source,
                detail=f"{pipeline_version} by {owner or application or 'anonymous'}",
            )
            transaction.on_commit(lambda: process_publish(process))
    except IntegrityError:
        if key and (first := Process.objects.filter(idempotency_key=key).first()):
            return _replay(first, **request), False  # the same key won a race a moment ago
        raise
    return process, True


def _input_problems(used_config: dict, secrets: dict, idempotency_key: str) -> dict:
    """Problems by field: limits of depth and size, and text nothing downstream can hold."""
    found = {"used_config": config_problems(used_config, "used_config"),
             "secrets": value_problems(secrets, "secrets"),  # sized by secret_errors
             "Idempotency-Key": idempotency_key_problems(idempotency_key)}
    return {field: problems for field, problems in found.items() if problems}


def process_publish(process: Process) -> bool:
    """Send the job spec to the pool's queue and mark the process QUEUED. A failure leaves it
    PENDING, and the outbox sweep of the poll loop sends it again."""
    try:
        messaging.send_job_spec(process)
    except Exception as exc:  # the broker is down: the sweep retries, the API still answers
        log.warning("process %s not published yet: %s", process.id, exc)
        return False
    transition_to_queued(process.pk, spec_sent_at=timezone.now())
    process.refresh_from_db(fields=["state", "queued_at", "spec_sent_at", "updated_at"])
    return True


def process_stop(process: Process, source: str = "api") -> Process:
    """Ask for a stop. Idempotent: a finished process is left as it is.

    A process not yet on its target ends STOPPED at once (a late submission is cancelled when
    its event arrives); one on its target goes STOPPING and the cancel reaches its host. The
    poll loop repeats the stop until the target confirms, so a worker that was down still
    carries it out when it returns.
    """
    if is_terminal(process.state):
        return process
    if State(process.state) in POLLED_STATES and process.handle:
        transition(process.pk, State.STOPPING, source, "stop requested",
                   stop_requested_at=timezone.now())
        process.refresh_from_db()
        _send_cancel_quietly(process)
    else:
        transition(process.pk, State.STOPPED, source, "stopped before it reached its target",
                   stop_requested_at=timezone.now(), message="stopped before it started")
        process.refresh_from_db()
    return process


@sensitive_variables()
def process_rerun(process: Process, *, owner=None, application=None) -> Process:
    """A new process of the same pipeline version with the same config and secrets (opened
    here and sealed again for the new process: a sealed value opens only for the process it
    was sealed for). A withdrawn version is refused like in a POST (ValidationError naming
    ``version``): a re-run repeats a run, it never silently runs another version; secrets
    that no configured key opens any more are a ValidationError naming ``secrets``."""
    try:
        secrets = unseal(process.secret_env, process_id=process.pk, pool=process.pool)
    except SecretsError as exc:
        raise ValidationError({"secrets": [str(exc)]}) from None
    new, _ = process_create(
        pipeline=process.pipeline.name, version=process.pipeline_version.number,
        used_config=process.used_config, secrets=secrets,
        owner=owner or process.owner,
        application=application, source=f"re-run of {process.id}",
    )
    return new


def _send_cancel_quietly(process: Process) -> None:
    try:
        messaging.send_cancel(process)
    except Exception as exc:  # the poll loop carries the stop request on every round
        log.warning("cancel of %s not sent now, the next poll carries it: %s", process.id, exc)
