"""AWS access for the ECS target: one boto3 client per service and pool, one function for
every call.

botocore's adaptive retry mode retries throttling and transient errors with backoff and a
client-side rate limit; what still fails raises AwsError (a failed poll decides nothing).
Credentials come from the standard boto3 chain only.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..base import ExecutorError
from .pool import EcsPool

# AWS error codes no retry can fix: the request itself is wrong (fail the job with the text).
PERMANENT_CODES = frozenset({
    "ClientException", "InvalidParameterException", "ClusterNotFoundException",
    "UnsupportedFeatureException", "PlatformUnknownException",
    "PlatformTaskDefinitionIncompatibilityException", "AccessDeniedException",
    "AccessDeniedExceptionException", "UnrecognizedClientException",
})

# Shared by every executor instance of a worker process (a worker makes one per message): the
# clients, and with them the adaptive rate limiter.
_CLIENTS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


class AwsError(ExecutorError):
    """An AWS call failed after botocore's retries; ``code`` is AWS's error code."""

    def __init__(self, message: str, *, code: str = "", permanent: bool = False):
        super().__init__(message, permanent=permanent)
        self.code = code


def client(pool: EcsPool, service: str, *, polling: bool = False):
    """The pool's client of ``service``. A poll's client tries ``poll_attempts`` times, any
    other ``max_attempts``: a failed poll decides nothing and the next one comes soon."""
    attempts = pool.poll_attempts if polling else pool.max_attempts
    if not pool.region:
        raise ExecutorError(
            f"pool {pool.name}: no AWS region (set settings.region or AWS_REGION)",
            permanent=True,
        )
    key = (service, pool.region, pool.endpoint_url, attempts, pool.name)
    with _LOCK:
        if key not in _CLIENTS:
            config = Config(
                region_name=pool.region,
                retries={"mode": "adaptive", "total_max_attempts": attempts},
                connect_timeout=10, read_timeout=30, user_agent_extra="orchestration",
            )
            _CLIENTS[key] = boto3.session.Session().client(
                service, config=config, endpoint_url=pool.endpoint_url,
            )
        return _CLIENTS[key]


def call(client, operation: str, **kwargs) -> dict[str, Any]:
    """Every AWS call goes through here: botocore retries (adaptive mode) and times out;
    what is left becomes an AwsError, permanent only when the request itself is wrong."""
    service = client.meta.service_model.service_name
    try:
        return getattr(client, operation)(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        text = f"{service} {operation}: {code}: {error.get('Message') or exc}"
        raise AwsError(text, code=code, permanent=code in PERMANENT_CODES) from exc
    except BotoCoreError as exc:  # no credentials, connection refused, read timeout ...
        raise AwsError(f"{service} {operation}: {exc}") from exc
