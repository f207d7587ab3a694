"""The ECS target: a job is an AWS ECS task (Fargate, Fargate Spot or EC2 capacity).

- **Handle**: the task ARN. Every handle of a pool lives in the pool's ``cluster``.
- **Task definition** (``task_definitions``): one per pipeline version, family
  ``<family_prefix><pipeline name>``, tagged with a fingerprint of everything registered
  (image, command, resources, roles, logs). It is looked up (in memory, then the family's
  newest revisions) before anything is registered, so a revision is registered once and reused
  by every run of that version.
- **Run** (``runs``): ``run_task`` with container overrides (command, environment with
  ``ORCH_CONFIG``, cpu, memory, GPUs), ``startedBy`` = the job name, tags carrying the process
  id, and a ``clientToken`` derived from the process id: ECS answers a repeated call with the
  task it already started. ``find`` looks the job name up with ``list_tasks`` first.
- **Poll** (``executor``, ``states``): one ``describe_tasks`` per 100 handles; lastStatus,
  desiredStatus, stopCode and the essential container's exit code are mapped in the tables of
  ``states``.
- **Logs** (``logs``): CloudWatch Logs, stream ``<prefix>/<container>/<task id>`` of the
  pool's log group (the awslogs driver's naming), read by forward token; the token is the
  ``LogChunk.cursor`` the control plane hands back as ``PollItem.log_cursor``.
- **AWS errors** (``aws``): botocore's adaptive retry mode retries throttling and transient
  errors with backoff and a client-side rate limit; what still fails raises ExecutorError (a
  failed poll decides nothing). Credentials come from the standard boto3 chain only.
- **Pool settings** (``pool``): the table of what a pool's ``settings:`` may say.
"""

from .executor import EcsExecutor
from .states import STOP_REASON

__all__ = ["STOP_REASON", "EcsExecutor"]
