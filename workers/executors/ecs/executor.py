"""The ECS executor: the target's interface, and its poll (``describe_tasks`` per 100 handles).

Submission is in ``runs``, task definitions in ``task_definitions``, the meaning of a task's
answer in ``states`` and its output in ``logs``. What a poll learns of each task (already
stopping, stopped, its log read due) travels in the :class:`TaskStatus` that ``statuses``
returns; the poll hands it back to ``cancel_in_poll`` and ``read_log_in_poll``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ... import outputs
from ...contract import JobSpec, PollItem, State
from ...storage import StorageError
from ..base import Executor, ExecutorError, LogChunk, Status, Submission, time_limit_passed
from . import data
from .aws import AwsError, call, client
from .logs import log_turn, read_task_log
from .pool import EcsPool
from .runs import find_task, run_task
from .states import STOP_REASON, TASK_ARN, TIME_LIMIT_REASON, TaskStatus, match_by_id, task_status

log = logging.getLogger(__name__)

DESCRIBE_BATCH = 100  # describe_tasks takes at most 100 tasks


class EcsExecutor(Executor):
    target = "ecs"

    def __init__(self, pool: str, settings: dict[str, Any] | None = None):
        super().__init__(pool, settings)
        self.ecs_pool = EcsPool.from_settings(pool, self.settings)

    # --- the pool's AWS clients: submissions retry longer than polls ------------------------------

    @property
    def ecs(self):
        return client(self.ecs_pool, "ecs")

    @property
    def logs(self):
        return client(self.ecs_pool, "logs")

    @property
    def ecs_polling(self):
        return client(self.ecs_pool, "ecs", polling=True)

    @property
    def logs_polling(self):
        return client(self.ecs_pool, "logs", polling=True)

    # --- submit -----------------------------------------------------------------------------

    def find(self, spec: JobSpec) -> Submission | None:
        return find_task(self.ecs_pool, spec)

    def start(self, spec: JobSpec) -> Submission:
        if not spec.inputs and not self.ecs_pool.stage_image:
            # A pool with no stage_image keeps no outputs of its tasks (docs/ecs.md): its
            # tasks run as they are; a task that reads a dataset still needs one (refused).
            spec = replace(spec, outputs={})
        return run_task(self.ecs_pool, spec)

    # --- poll -------------------------------------------------------------------------------

    def statuses(self, items: list[PollItem]) -> dict[str, Status]:
        by_handle = {item.handle: item for item in items}
        arns = [h for h in by_handle if TASK_ARN.match(h)]
        answers: dict[str, Status] = {
            h: Status(missing=True, message=f"not an ECS task ARN: {h!r}")
            for h in by_handle if not TASK_ARN.match(h)
        }
        tasks, unknown = self._describe(arns)
        answers.update(unknown)
        running: dict[str, TaskStatus] = {}
        for handle in arns:
            task = tasks.get(handle) or match_by_id(tasks, handle)
            if task is None:
                answers.setdefault(handle, Status(missing=True, message=f"ECS has no {handle}"))
                continue
            answers[handle] = status = task_status(
                task, self.ecs_pool.container_name, self.ecs_pool.log_settle_s
            )
            if status.stopped:
                continue
            if status.state == State.RUNNING:
                running[handle] = status
            item = by_handle[handle]
            if not status.stopping and time_limit_passed(item):
                try:
                    status.stopping = self._stop(
                        handle, f"{TIME_LIMIT_REASON} of {item.time_limit_s} s exceeded"
                    )
                except ExecutorError as exc:  # asked again on the next poll
                    log.warning("stop of %s past its time limit failed: %s", handle, exc)
        for handle in log_turn(self.ecs_pool, list(running)):
            running[handle].log_due = True
        return answers

    def _describe(self, arns: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, Status]]:
        """ECS's answer on ``arns``, ``describe_tasks`` per batch: the tasks it describes, by
        ARN, and a missing status for each ARN it names a failure."""
        tasks: dict[str, dict[str, Any]] = {}
        unknown: dict[str, Status] = {}
        for cluster, batch in self._batches(arns):
            answer = call(self.ecs_polling, "describe_tasks", cluster=cluster, tasks=batch)
            for task in answer.get("tasks") or []:
                tasks[task["taskArn"]] = task
            for failure in answer.get("failures") or []:
                why = " ".join(filter(None, (failure.get("reason"), failure.get("detail"))))
                unknown[failure.get("arn", "")] = Status(
                    missing=True, message=f"ECS does not know task {failure.get('arn')} ({why})",
                )
        return tasks, unknown

    def _batches(self, arns: list[str]) -> list[tuple[str, list[str]]]:
        """``arns`` by cluster (the one in a long-format ARN, else the pool's), 100 a batch."""
        by_cluster: dict[str, list[str]] = {}
        for arn in arns:
            by_cluster.setdefault(self._cluster_of(arn), []).append(arn)
        return [(cluster, handles[at:at + DESCRIBE_BATCH])
                for cluster, handles in by_cluster.items()
                for at in range(0, len(handles), DESCRIBE_BATCH)]

    def _cluster_of(self, handle: str) -> str:
        parts = handle.split(":", 5)[-1].split("/")
        return parts[1] if len(parts) == 3 and parts[0] == "task" else self.ecs_pool.cluster

    def cancel(self, handle: str) -> None:
        self._stop(handle, STOP_REASON)

    def cancel_in_poll(self, item: PollItem, status: Status) -> None:
        if not isinstance(status, TaskStatus):
            self.cancel(item.handle)
        elif not status.stopping:  # else ECS is already stopping it: asking again changes nothing
            status.stopping = self._stop(item.handle, STOP_REASON)

    def _stop(self, handle: str, reason: str) -> bool:
        """Ask ECS to stop the task; False when ECS does not know it (nothing to stop)."""
        try:
            call(self.ecs, "stop_task", cluster=self._cluster_of(handle), task=handle,
                 reason=reason)
        except AwsError as exc:
            if exc.code == "InvalidParameterException" and "not found" in str(exc).lower():
                return False  # an unknown task: nothing to stop
            raise
        return True

    def collect_outputs(self, item: PollItem, status: Status) -> outputs.StoredOutputs | None:
        """The outputs the task's stage-out container put in the bucket (see ``data``)."""
        task = status.task if isinstance(status, TaskStatus) else None
        spec = data.outputs_spec_of(task) if task else None
        if spec is None:
            return None
        failure = data.stage_out_failure(task or {})
        if failure:
            raise outputs.OutputsError(failure)
        try:
            return data.collect(spec)
        except (StorageError, BotoCoreError, ClientError) as exc:
            raise outputs.OutputsError(str(exc)) from exc

    def read_log(self, item: PollItem, limit: int) -> LogChunk:
        """Bytes of the task's stream from ``item.log_offset`` (see ``logs.read_task_log``);
        one CloudWatch page, as for a running task."""
        return read_task_log(self.ecs_pool, item, limit, stopped=False)

    def read_log_in_poll(self, item: PollItem, status: Status, limit: int) -> LogChunk:
        """Only the tasks whose read is due in this poll; a stopped task's log to its end."""
        if not isinstance(status, TaskStatus) or not status.log_due:
            return LogChunk()
        return read_task_log(self.ecs_pool, item, limit, stopped=status.stopped)
