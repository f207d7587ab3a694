"""Everything the control plane sends to workers goes through here: job specs, polls and
cancels, shaped by ``workers.contract``, signed by ``workers.signing`` with the key of the
pool they are for (a worker runs nothing unsigned, nor anything signed for another pool) and
routed to the pool's (or the host's) queue."""

from __future__ import annotations

from django.conf import settings

from apps.processes.models import Process
from orchestration.celery import app
from workers.contract import (
    TASK_CANCEL,
    TASK_POLL,
    TASK_SUBMIT,
    JobSpec,
    PollItem,
    PollRequest,
    Resources,
    pool_queue,
    queue_for_handle,
)
from workers.signing import sign


def job_spec(process: Process) -> JobSpec:
    version = process.pipeline_version
    run = version.run
    return JobSpec(
        process_id=str(process.id),
        pipeline=process.pipeline.name,
        version=version.number,
        target=version.target,
        pool=version.pool.name,
        command=run.get("command", []),
        image=run.get("image", ""),
        script=run.get("script", ""),
        env=run.get("env", {}),
        user=run.get("user", ""),
        secret_env=process.secret_env,  # sealed: only the worker that starts the job opens it
        config=process.used_config,
        resources=Resources(**version.resources),
        pool_settings=version.pool.settings,
        created_at=process.created_at.timestamp(),
    )


def send_job_spec(process: Process) -> None:
    spec = job_spec(process)
    # A short argsrepr: Celery would otherwise format the whole spec (config included) for
    # its logs on every publish.
    envelope = sign("spec", spec.pool, spec.to_dict())
    app.send_task(TASK_SUBMIT, args=[envelope], queue=pool_queue(spec.pool),
                  argsrepr=f"[job spec of {spec.process_id}]")


def poll_item(process: Process, stop: bool = False) -> PollItem:
    started = process.started_at or process.submitted_at
    return PollItem(
        process_id=str(process.id),
        handle=process.handle,
        log_offset=process.log_size,
        log_cursor=process.log_cursor or None,
        stop_requested=stop or process.stop_requested_at is not None,
        submitted_at=started.timestamp() if started else None,
        time_limit_s=process.pipeline_version.resources.get("time_limit_s"),
    )


def send_poll(request: PollRequest, *, cancel: bool = False) -> None:
    """One message for many handles of one pool (and host). Polls expire: a worker that was
    down gets the next round, not a backlog of stale ones. Cancels do not expire."""
    queue = queue_for_handle(request.pool, request.target, request.host)
    argsrepr = f"[{len(request.items)} handles of pool {request.pool}]"
    args = [sign("cancel" if cancel else "poll", request.pool, request.to_dict())]
    if cancel:
        app.send_task(TASK_CANCEL, args=args, queue=queue, argsrepr=argsrepr)
    else:
        app.send_task(TASK_POLL, args=args, queue=queue, argsrepr=argsrepr,
                      expires=settings.POLL_INTERVAL_S * 5)


def send_cancel(process: Process) -> None:
    request = PollRequest(
        pool=process.pool, target=process.target, host=process.host or None,
        items=[poll_item(process, stop=True)], pool_settings=process.pipeline_version.pool.settings,
    )
    send_poll(request, cancel=True)
