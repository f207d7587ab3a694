"""Everything the control plane sends to workers goes through here: job specs, polls and
cancels, shaped by ``workers.contract``, signed by ``workers.signing`` with the key of the
pool they are for (a worker runs nothing unsigned, nor anything signed for another pool) and
routed to the pool's (or the host's) queue."""

from __future__ import annotations

from django.conf import settings

from apps.datasets.jobs import job_inputs, job_outputs
from apps.processes.models import Process
from apps.processes.run_options import resources_of, sbatch_of
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
from workers.signing import max_age_s, sign


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
        image=process.image or run.get("image", ""),
        script=run.get("script", ""),
        env={**run.get("env", {}), **process.env},  # the run's own values over the pipeline's
        user=run.get("user", ""),
        secret_env=process.secret_env,  # sealed: only the worker that starts the job opens it
        config=process.used_config,
        resources=Resources(**resources_of(version, process.resources)),
        gpu_devices=list(process.gpu_devices),
        pool_settings=version.pool.settings,
        created_at=process.created_at.timestamp(),
        attempt=process.attempt,
        inputs=job_inputs(process, version.pool.settings),
        outputs=job_outputs(process, version.pool.settings),
        sbatch=sbatch_of(version, process.sbatch),
    )


def signed_spec(process: Process) -> tuple[str, dict, str]:
    """(queue, signed envelope, process id) of ``process``'s job spec, as the relay sends it."""
    spec = job_spec(process)
    return pool_queue(spec.pool), sign("spec", spec.pool, spec.to_dict()), spec.process_id


def spec_send_options(process_id: str) -> dict:
    """How every copy of a job spec is sent. It expires from its queue (an AMQP message TTL)
    once a worker would refuse its signature as stale: a pool down for days holds at most two
    copies of each waiting run's spec (``polling.specs_resend`` sends a fresh one at half that
    age), never one more per resend. A short argsrepr: Celery would otherwise format the whole
    spec (config included) for its logs on every publish."""
    return {"argsrepr": f"[job spec of {process_id}]", "expires": max_age_s("spec")}


def send_job_spec(process: Process) -> None:
    queue, envelope, process_id = signed_spec(process)
    app.send_task(TASK_SUBMIT, args=[envelope], queue=queue, **spec_send_options(process_id))


def poll_item(process: Process, stop: bool = False) -> PollItem:
    started = process.started_at or process.submitted_at
    return PollItem(
        process_id=str(process.id),
        handle=process.handle,
        # The job's own byte count: its attempt's output starts at log_base in the process's.
        log_offset=process.log_size - process.log_base,
        log_cursor=process.log_cursor or None,
        stop_requested=stop or process.stop_requested_at is not None,
        submitted_at=started.timestamp() if started else None,
        time_limit_s=resources_of(process.pipeline_version, process.resources).get(
            "time_limit_s"),
        attempt=process.attempt,
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


def send_cancel_of_attempt(process: Process, handle: str, host: str | None,
                           attempt: int) -> None:
    """Stop the job ``handle`` of an earlier attempt of ``process`` that reported itself
    alive (a late second delivery of that attempt's job spec started it)."""
    item = PollItem(process_id=str(process.id), handle=handle, stop_requested=True,
                    attempt=attempt)
    request = PollRequest(pool=process.pool, target=process.target, host=host or None,
                          items=[item], pool_settings=process.pipeline_version.pool.settings)
    send_poll(request, cancel=True)


def send_cancel(process: Process) -> None:
    request = PollRequest(
        pool=process.pool, target=process.target, host=process.host or None,
        items=[poll_item(process, stop=True)], pool_settings=process.pipeline_version.pool.settings,
    )
    send_poll(request, cancel=True)
