"""Writing processes: create, stop, re-run. Views, admin actions and tasks call these and
nothing else writes a process (worker events go through events.py; admission and publishing
through admission.py)."""

from __future__ import annotations

import copy
import logging
import uuid
from typing import TypedDict

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apps.audit.models import Action
from apps.audit.services import audit_record
from apps.datasets.config_fields import dataset_refs
from apps.datasets.refs import ref_errors, uses_record
from apps.pipelines.definitions import config_errors
from apps.pipelines.selectors import (
    pipeline_version_get,
    pipeline_version_refusal,
    pools_open_to,
    sees_every_pool,
)
from apps.processes import messaging, relay
from apps.processes.admission import waiting_quota_check
from apps.processes.attempts import attempt_first
from apps.processes.input_limits import (
    config_problems,
    idempotency_key_problems,
    text_problems,
    value_problems,
)
from apps.processes.models import CreatedRows, Process, ProcessEvent
from apps.processes.run_options import (
    as_request,
    env_errors,
    image_errors,
    resource_errors,
    resources_asked,
    sbatch_asked,
    sbatch_errors,
)
from apps.processes.transitions import transition
from apps.teams.access import Caller
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
    team: object
    priority: int
    resources: dict | None
    image: str
    env: dict | None
    sbatch: dict | None


class IdempotencyKeyReused(Exception):
    """An Idempotency-Key already used by this client came with another request."""


def _replay(first: Process, *, pipeline: str, version: int | None, used_config: dict,
            secrets: dict | None, team=None, priority: int = 0, resources: dict | None = None,
            image: str = "", env: dict | None = None, sbatch: dict | None = None) -> Process:
    """``first`` when the request is the one that created it; raises IdempotencyKeyReused
    naming what differs otherwise. Compared as the run would be: the pipeline, the version
    when one is named, the config merged over the first run's defaults, the secrets, the
    team, the priority, the resources, image, env and sbatch options it asked."""
    differs = []
    if first.pipeline.name != pipeline:
        differs.append("pipeline")
    if version is not None and first.pipeline_version.number != version:
        differs.append("version")
    if merge_config(first.pipeline_version.defaults, used_config) != first.used_config:
        differs.append("used_config")
    if (secrets or {}) != unseal(first.secret_env, process_id=first.pk, pool=first.pool):
        differs.append("secrets")
    if first.team_id != (team.pk if team is not None else None):
        differs.append("team")
    if first.priority != priority:
        differs.append("priority")
    differs += _options_differ(first, resources or {}, image, env or {}, sbatch or {})
    if differs:
        raise IdempotencyKeyReused(
            f"already used for process {first.pk} with another {', '.join(differs)}; "
            "a retried request must repeat the first one, a new request needs a new key.")
    return first


def _options_differ(first: Process, resources: dict, image: str, env: dict,
                    sbatch: dict) -> list[str]:
    """Which of the resources, image, env and sbatch options a request asks differ from
    ``first``'s."""
    asked = {"resources": resources_asked(resources)[0], "image": image, "env": env,
             "sbatch": sbatch_asked(sbatch)[0]}
    return [name for name, value in asked.items() if getattr(first, name) != value]


# Kept out of error reports: every local (``request`` holds the secrets too) and, as the
# nearest marked caller, every variable of what it calls (seal's ``values``).
@sensitive_variables()
def process_create(
    *, pipeline: str, used_config: dict, secrets: dict | None = None,
    owner=None, application=None, team=None, version: int | None = None,
    idempotency_key: str | None = None, source: str = "api", actor: Caller | None = None,
    audit_action: str = Action.SUBMIT, priority: int = 0, resources: dict | None = None,
    image: str = "", env: dict | None = None, sbatch: dict | None = None,
) -> tuple[Process, bool]:
    """Validate and persist a run, PENDING with its first event, in one transaction; once it
    commits, the relay (apps.processes.relay) admits it on its pool, or it waits, and
    publishes it. Nothing of admission or the broker is in the caller's time.

    ``secrets`` are plain values, checked here and sealed for the new process and its pool.
    ``team`` is the team it is submitted for, as the caller's right to submit there was
    checked (apps.teams.selectors.submit_team); a pipeline of a pool not open to that team is
    refused as an unknown one. ``actor`` is who asked, for the audit trail (None: the
    system). ``priority`` (-10..10) orders it among its team's waiting processes.
    ``resources`` ({cpus, memory, gpus, time_limit}, each optional, over the pipeline's own),
    ``image``, plain ``env`` values and ``sbatch`` options are what the run chooses within its
    pool's limits and its pipeline's ``allow`` (apps.processes.run_options).

    Returns (process, created). With an ``idempotency_key`` already used by this client for
    the same request, the first process is returned and nothing is created; for another
    request, IdempotencyKeyReused. Raises ValidationError naming the field, and QuotaExceeded
    (429) when the team already has its waiting quota on the pool.
    """
    refused = _input_problems(used_config, secrets or {}, idempotency_key or "",
                              resources or {}, env or {}, sbatch or {})
    if refused:  # before anything reads, compares or stores what the database cannot hold
        raise ValidationError(refused)
    key = f"{idempotency_scope(owner, application)}/{idempotency_key}" if idempotency_key else None
    request: _Request = {"pipeline": pipeline, "version": version, "used_config": used_config,
                         "secrets": secrets, "team": team, "priority": priority,
                         "resources": resources, "image": image, "env": env,
                         "sbatch": sbatch}
    if key and (first := Process.objects.filter(idempotency_key=key).first()):
        return _replay(first, **request), False
    usable = pools_open_to(team)
    pipeline_version = pipeline_version_get(pipeline, version, pools=usable)
    if pipeline_version is None:  # unknown, withdrawn or closed: the selector says which
        raise ValidationError(dict([_refusal(pipeline, version, usable, team, actor)]))
    config = merge_config(pipeline_version.defaults, used_config)
    asked, unreadable = resources_asked(resources or {})
    options, unreadable_options = sbatch_asked(sbatch or {})
    refs = dataset_refs(pipeline_version.config_schema, config)  # the datasets it names
    errors = {"used_config": (config_errors(pipeline_version.config_schema, config)
                              or ref_errors(refs, team)),
              "secrets": secret_errors(pipeline_version.secrets, secrets or {}),
              "resources": unreadable or resource_errors(pipeline_version, asked),
              "image": image_errors(pipeline_version, image),
              "env": env_errors(pipeline_version, env or {}),
              "sbatch": unreadable_options or sbatch_errors(pipeline_version, options)}
    if any(errors.values()):
        raise ValidationError({name: found for name, found in errors.items() if found})
    # The id is chosen here, not by the insert: the secrets are sealed for it.
    process_id = uuid.uuid4()
    secret_env = seal(secrets, process_id=process_id,
                      pool=pipeline_version.pool.name) if secrets else ""
    pool = pipeline_version.pool
    try:
        with transaction.atomic():
            waiting_quota_check(pool, team)  # under the pool's lock: racing POSTs queue here
            process = Process.objects.create(
                id=process_id,
                pipeline=pipeline_version.pipeline,
                pipeline_version=pipeline_version,
                owner=owner,
                application=application,
                team=team,
                used_config=config,
                resources=asked,
                image=image,
                env=env or {},
                sbatch=options,
                secret_env=secret_env,
                target=pipeline_version.target,
                pool=pool.name,
                idempotency_key=key,
                priority=priority,
            )
            uses = uses_record(process, refs)  # checked again under lock: none deleted since
            ProcessEvent.objects.create(
                process=process, to_state=State.PENDING, source=source,
                detail=f"{pipeline_version} by {owner or application or 'anonymous'}",
            )
            attempt = attempt_first(process)
            audit_record(actor, audit_action, team=team, target=f"process {process.pk}",
                         detail={"pipeline": pipeline, "version": pipeline_version.number,
                                 **({"source": source} if source != "api" else {})})
            relay.wake()  # the relay admits and publishes it once this commits
    except IntegrityError:
        if key and (first := Process.objects.filter(idempotency_key=key).first()):
            return _replay(first, **request), False  # the same key won a race a moment ago
        raise
    # What the answer shows of them, known here: serializing it reads nothing back.
    process.rows_created = CreatedRows(attempts=[attempt], dataset_uses=uses)
    return process, True


def _refusal(pipeline: str, version: int | None, usable: set[str] | None, team,
             actor: Caller | None) -> tuple[str, list[str]]:
    """Why no version of ``pipeline`` runs for ``team``: (field, [message]). A pipeline of a
    pool closed to the team is answered as an unknown one, unless the caller sees every pool
    anyway (a superuser, those who run the service): they are told which pool and team."""
    field, message = pipeline_version_refusal(pipeline, version, pools=usable)
    if usable is not None and actor is not None and sees_every_pool(actor):
        found = pipeline_version_get(pipeline, version)
        if found is not None and found.pool.name not in usable:
            return "team", [f"Pipeline {pipeline!r} runs on pool {found.pool.name!r}, which is "
                            f"not open to team {team.slug!r}."]
    return field, [message]


def _input_problems(used_config: dict, secrets: dict, idempotency_key: str,
                    resources: dict, env: dict, sbatch: dict) -> dict:
    """Problems by field: limits of depth and size, and text nothing downstream can hold."""
    found = {"used_config": config_problems(used_config, "used_config"),
             "secrets": value_problems(secrets, "secrets"),  # sized by secret_errors
             "Idempotency-Key": idempotency_key_problems(idempotency_key),
             "resources": value_problems(resources, "resources"),
             "env": value_problems(env, "env"),  # sized by env_errors
             "sbatch": value_problems(sbatch, "sbatch")}
    return {field: problems for field, problems in found.items() if problems}


def process_stop(process: Process, source: str = "api", actor: Caller | None = None) -> Process:
    """Ask for a stop. Idempotent: a finished process is left as it is.

    A process not yet on its target ends STOPPED at once (a late submission is cancelled when
    its event arrives); one on its target goes STOPPING and the cancel reaches its host. The
    poll loop repeats the stop until the target confirms, so a worker that was down still
    carries it out when it returns.
    """
    if is_terminal(process.state):
        return process
    on_target = State(process.state) in POLLED_STATES and bool(process.handle)
    with transaction.atomic():  # the stop and its audit entry, or neither
        if on_target:
            moved = transition(process.pk, State.STOPPING, source, "stop requested",
                               stop_requested_at=timezone.now())
        else:
            moved = transition(process.pk, State.STOPPED, source,
                               "stopped before it reached its target",
                               stop_requested_at=timezone.now(),
                               message="stopped before it started")
        if moved:  # a second stop of a process already stopping changes nothing
            audit_record(actor, Action.STOP, team=process.team,
                         target=f"process {process.pk}", detail={"state": process.state})
        if moved and not on_target:  # a slot it held (admitted, not yet on its target) frees
            relay.wake()
    process.refresh_from_db()
    if on_target:
        _send_cancel_quietly(process)
    return process


@sensitive_variables()
def process_rerun(process: Process, *, owner=None, application=None,
                  actor: Caller | None = None) -> Process:
    """A new process of the same pipeline version with the same config, resources, image,
    env, sbatch options and secrets (opened
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
        application=application, team=process.team, source=f"re-run of {process.id}",
        actor=actor, audit_action=Action.RERUN, priority=process.priority,
        resources=as_request(process.resources), image=process.image, env=process.env,
        sbatch=process.sbatch,
    )
    return new


def _send_cancel_quietly(process: Process) -> None:
    try:
        messaging.send_cancel(process)
    except Exception as exc:  # the poll loop carries the stop request on every round
        log.warning("cancel of %s not sent now, the next poll carries it: %s", process.id, exc)
