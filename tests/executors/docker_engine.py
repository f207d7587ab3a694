"""The real container engine as the Docker tests use it: checked before, cleaned up after."""

from __future__ import annotations

import os
import time

import pytest
from docker.errors import APIError, DockerException, NotFound

# The example images deploy/container-engine.sh builds locally (no registry is reachable).
BUSYBOX = "orchestration/busybox:latest"
PYTHON = "orchestration/python:latest"


def usable_engine(connect):
    """``connect()``'s client of the engine; a skipped test that says how to start it when the
    engine or its example images are missing (a failure in CI: tests/conftest.py)."""
    try:
        client = connect()
        client.ping()
        client.images.get(BUSYBOX)
        client.images.get(PYTHON)
    except DockerException as exc:
        where = os.environ.get("DOCKER_HOST", "the default socket (DOCKER_HOST is not set)")
        pytest.skip(
            f"no usable container engine at {where}: {exc}. Start it with "
            '`eval "$(deploy/container-engine.sh)"` (Podman serving the Docker API, with the '
            f"{BUSYBOX} and {PYTHON} images), then run the tests again."
        )
    return client


def force_remove(api, container_id: str, attempts: int = 5) -> None:
    """Remove a container whatever its state. Podman refuses a forced removal that races with
    the container's own stop ("container state improper: stopped"): that is asked again."""
    for attempt in range(attempts):
        try:
            api.remove_container(container_id, force=True, v=True)
            return
        except NotFound:
            return
        except APIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
