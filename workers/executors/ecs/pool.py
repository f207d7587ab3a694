"""What an ECS pool's settings say: where its tasks run, how they are reached, read once.

Pool settings (``settings:`` of the pool YAML; only ``region`` or its environment is needed
when the cluster has a default capacity provider strategy):

=========================== =============================================================
cluster                     cluster name or ARN (``ORCH_ECS_CLUSTER``, else ``default``)
region                      AWS region (``AWS_REGION`` / ``AWS_DEFAULT_REGION``)
launch_type                 ``FARGATE``, ``EC2`` or ``EXTERNAL`` (not with a strategy)
capacity_provider_strategy  ``[{capacity_provider, weight, base}]``, e.g. Fargate Spot first
subnets, security_groups    for ``awsvpc`` networking (Fargate needs them)
assign_public_ip            ``ENABLED`` or ``DISABLED`` (default)
network_mode                ``awsvpc`` (default), ``bridge``, ``host``
execution_role_arn          role ECS uses to pull the image and write logs
task_role_arn               role the job's own code runs as
log_group                   CloudWatch log group (default ``/orchestration/<pool>``)
log_stream_prefix           awslogs stream prefix (default ``orch``)
create_log_group            create the log group when registering (default true)
platform_version            Fargate platform version (default: ECS's ``LATEST``)
family_prefix               task definition family prefix (default ``orch-``)
container_name              the job's container in the task definition (default ``main``)
max_attempts                attempts per AWS call, retries included (default 8)
poll_attempts               attempts of a poll's DescribeTasks and GetLogEvents (default 3):
                            a failed poll decides nothing and the next comes in seconds, so a
                            poll does not wait out a long throttle (8 held one for 36 s)
log_reads_per_poll          running tasks whose logs are read per poll (default 50)
log_settle_s                seconds after stoppedAt before the end is reported (default 5)
stage_image                 the image that copies datasets and outputs between S3 and a
                            task (one with this worker package); needed by jobs that use them
endpoint_url                only for emulators and tests (moto); never for AWS itself
=========================== =============================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..base import ExecutorError

# Settings that would carry credentials: refused, they come from the standard boto3 chain.
CREDENTIAL_KEYS = frozenset({
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "access_key",
    "secret_key", "credentials", "profile", "profile_name",
})


@dataclass(frozen=True)
class EcsPool:
    """One pool's settings, with their defaults applied. Built by :meth:`from_settings`."""

    name: str
    cluster: str
    region: str | None
    endpoint_url: str | None
    launch_type: str | None
    strategy: list[dict[str, Any]]
    network_mode: str
    subnets: list[str]
    security_groups: list[str]
    assign_public_ip: str
    container_name: str
    log_group: str
    log_prefix: str
    create_log_group: bool
    platform_version: str | None
    family_prefix: str
    execution_role_arn: str | None
    task_role_arn: str | None
    max_attempts: int
    poll_attempts: int
    log_budget: int | None
    log_settle_s: float
    stage_image: str | None = None

    @classmethod
    def from_settings(cls, pool: str, settings: dict[str, Any]) -> EcsPool:
        """Raises a permanent ExecutorError for settings that can never work."""
        s = settings
        refused = sorted(CREDENTIAL_KEYS & {k.lower() for k in s})
        if refused:
            raise ExecutorError(
                f"pool {pool}: settings {', '.join(refused)} are refused; AWS credentials come "
                "from the standard boto3 chain (environment, profile, instance or task role)",
                permanent=True,
            )
        launch_type = s.get("launch_type") or None
        strategy = [_strategy_item(x) for x in s.get("capacity_provider_strategy") or []]
        if launch_type and strategy:
            raise ExecutorError(
                f"pool {pool}: set launch_type or capacity_provider_strategy, not both",
                permanent=True,
            )
        max_attempts = int(s.get("max_attempts") or 8)
        budget = s.get("log_reads_per_poll", 50)
        return cls(
            name=pool,
            cluster=s.get("cluster") or os.environ.get("ORCH_ECS_CLUSTER") or "default",
            region=(s.get("region") or os.environ.get("AWS_REGION")
                    or os.environ.get("AWS_DEFAULT_REGION")),
            endpoint_url=s.get("endpoint_url") or None,
            launch_type=launch_type,
            strategy=strategy,
            network_mode=s.get("network_mode") or "awsvpc",
            subnets=list(s.get("subnets") or []),
            security_groups=list(s.get("security_groups") or []),
            assign_public_ip=s.get("assign_public_ip") or "DISABLED",
            container_name=s.get("container_name") or "main",
            log_group=s.get("log_group") or f"/orchestration/{pool}",
            log_prefix=s.get("log_stream_prefix") or "orch",
            create_log_group=_given(s, "create_log_group", True),
            platform_version=s.get("platform_version") or None,
            family_prefix=_given(s, "family_prefix", "orch-"),
            execution_role_arn=s.get("execution_role_arn") or None,
            task_role_arn=s.get("task_role_arn") or None,
            max_attempts=max_attempts,
            poll_attempts=int(s.get("poll_attempts") or min(3, max_attempts)),
            log_budget=None if budget is None else int(budget),
            log_settle_s=float(_given(s, "log_settle_s", 5)),
            stage_image=s.get("stage_image") or None,
        )

    @property
    def fargate(self) -> bool:
        """Tasks run on Fargate (no GPUs, fixed task sizes). With neither a launch type nor a
        strategy the cluster's default strategy applies, taken to be Fargate's."""
        if self.launch_type:
            return self.launch_type == "FARGATE"
        return not self.strategy or any(
            x["capacityProvider"].startswith("FARGATE") for x in self.strategy
        )

    def compatibilities(self) -> list[str]:
        if self.launch_type:
            return [self.launch_type]
        return ["FARGATE"] if self.fargate else ["EC2"]

    def network(self) -> dict[str, Any]:
        """run_task's ``networkConfiguration`` for ``awsvpc`` networking."""
        if not self.subnets:
            raise ExecutorError(
                f"pool {self.name}: network_mode awsvpc needs settings.subnets", permanent=True
            )
        return {"awsvpcConfiguration": {
            "subnets": list(self.subnets),
            "securityGroups": list(self.security_groups),
            "assignPublicIp": self.assign_public_ip,
        }}


def _strategy_item(item: dict[str, Any]) -> dict[str, Any]:
    provider = item.get("capacity_provider") or item.get("capacityProvider")
    if not provider:
        raise ExecutorError(f"capacity_provider_strategy item without a provider: {item}",
                            permanent=True)
    out: dict[str, Any] = {"capacityProvider": provider, "weight": int(item.get("weight", 1))}
    if item.get("base") is not None:
        out["base"] = int(item["base"])
    return out


def _given(settings: dict[str, Any], key: str, default: Any) -> Any:
    """The setting, or ``default`` when it is absent or null: pool files write ``null`` for
    "unset" (``pool_settings``), while an empty family prefix is a real choice."""
    value = settings.get(key)
    return default if value is None else value
