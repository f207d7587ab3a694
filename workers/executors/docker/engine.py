"""The container engine as the Docker target reaches it: Docker itself, or Podman's compatible
service, through the ``docker`` SDK.

Every engine call goes through :meth:`Engine.call`, which turns a failure into the target's
error: NotFound passes through for the caller to decide, a refusal because of a container's
state or name is an :class:`EngineConflict`, an engine that does not answer is an
:class:`EngineUnreachable` (a failed call decides nothing). The Podman quirks live here too: a
listing it trips over is asked again, and whether the engine is Podman decides a bind's mode.
"""

from __future__ import annotations

import logging
import os
import time
from functools import cached_property
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from ..base import ExecutorError

log = logging.getLogger(__name__)

# Listings asked at most this often when Podman trips over a container exiting meanwhile.
LIST_ATTEMPTS = 3
_CONFLICT = ("already in use", "not running", "can only kill running", "state improper")

# API versions negotiated with each engine, so only a worker's first executor asks.
_API_VERSIONS: dict[str, str] = {}
# Whether each engine is Podman (which takes nosuid,nodev on a bind; Docker refuses them).
_IS_PODMAN: dict[str, bool] = {}


class EngineUnreachable(ExecutorError):
    """The engine did not answer (transient): a failed call decides nothing."""


class EngineConflict(ExecutorError):
    """The engine refused because of the container's state or name (Docker's 409; Podman
    says so in a 500)."""


class Engine:
    """The engine a pool's settings name: ``docker_host`` (default ``DOCKER_HOST``),
    ``api_version``, ``api_timeout_s`` (60) and ``pull`` (``missing`` or ``never``)."""

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings

    @property
    def host(self) -> str:
        return (
            self.settings.get("docker_host")
            or os.environ.get("DOCKER_HOST")
            or "unix:///var/run/docker.sock"
        )

    @cached_property
    def client(self) -> docker.DockerClient:
        url = self.host
        version = self.settings.get("api_version") or _API_VERSIONS.get(url, "auto")
        timeout = int(self.settings.get("api_timeout_s", 60))
        try:
            if self.settings.get("docker_host"):
                client = docker.DockerClient(base_url=url, version=version, timeout=timeout)
            else:  # DOCKER_HOST and its TLS variables, as the docker CLI reads them
                client = docker.from_env(version=version, timeout=timeout)
        except DockerException as exc:
            raise ExecutorError(
                f"no container engine answers at {url}: {exc} "
                "(start one with deploy/container-engine.sh, or set DOCKER_HOST)"
            ) from exc
        _API_VERSIONS[url] = client.api.api_version
        return client

    @property
    def is_podman(self) -> bool:
        url = self.host
        if url not in _IS_PODMAN:
            version = self.call("version", self.client.api.version)
            _IS_PODMAN[url] = any("podman" in (c.get("Name") or "").lower()
                                  for c in version.get("Components") or [])
        return _IS_PODMAN[url]

    def call(self, what: str, call, *args, **kwargs):
        """Every engine call goes through here: NotFound passes through for the caller to
        decide; any other failure becomes an ExecutorError naming the call and the engine."""
        try:
            return call(*args, **kwargs)
        except NotFound:
            raise
        except APIError as exc:
            message = f"container engine at {self.host}: {what}: {exc.explanation or exc}"
            if exc.status_code == 409 or any(m in str(exc.explanation) for m in _CONFLICT):
                raise EngineConflict(message) from exc
            raise ExecutorError(message, permanent=exc.is_client_error()) from exc
        except (DockerException, requests.RequestException, OSError) as exc:
            raise EngineUnreachable(
                f"container engine at {self.host} did not answer ({what}): {exc}"
            ) from exc

    # --- containers -------------------------------------------------------------------------

    def containers(self, **labels: str) -> list[dict[str, Any]]:
        """Every container (running or not) carrying all of ``labels``, in one list call."""
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        for attempt in range(LIST_ATTEMPTS):
            try:
                return self.call("list containers", self.client.api.containers, all=True,
                                 filters=filters)
            except ExecutorError as exc:
                # Podman answers 500 "read /proc/<pid>/cgroup: no such process" when another
                # container exits during the listing: a read, so asking again is safe.
                if "no such process" not in str(exc) or attempt == LIST_ATTEMPTS - 1:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def inspect(self, container_id: str) -> dict[str, Any] | None:
        """The container's attributes, or None when the engine no longer has it."""
        try:
            return self.call("inspect container", self.client.api.inspect_container,
                             container_id)
        except NotFound:
            return None

    def create(self, request: dict[str, Any]) -> str:
        """Create the container ``request`` describes and return its id, pulling its image
        first when the engine lacks it (unless the pool's ``pull`` is ``never``)."""
        image = request["image"]
        create = self.client.api.create_container
        try:
            created = self.call("create container", create, **request)
        except ImageNotFound:
            self._pull(image)
            try:
                created = self.call("create container", create, **request)
            except NotFound as exc:
                raise self._missing_image(image, exc.explanation) from exc
        except NotFound as exc:
            raise self._missing_image(image, exc.explanation) from exc
        return created["Id"]

    def _pull(self, image: str) -> None:
        if self.settings.get("pull", "missing") == "never":
            raise self._missing_image(image, "pool setting pull is 'never'")
        try:
            self.call(f"pull {image}", self.client.images.pull, image)
        except EngineUnreachable:
            raise  # the engine is down, not the image missing
        except (NotFound, ExecutorError) as exc:
            raise self._missing_image(image, getattr(exc, "explanation", None) or exc) from exc

    def _missing_image(self, image: str, reason: Any) -> ExecutorError:
        return ExecutorError(
            f"image {image!r} is not on the container engine at {self.host} and could "
            f"not be pulled ({reason})",
            permanent=True,
        )

    def logs(self, container_id: str, tail: int | None = None) -> bytes:
        """The container's stdout and stderr (the last ``tail`` lines), in one engine call;
        NotFound passes through. The SDK's ``logs()`` inspects the container first to learn
        whether it has a tty, which doubles a poll's calls; ours never have one, so the answer
        is always multiplexed."""
        api = self.client.api

        def read() -> bytes:
            params = {"stdout": 1, "stderr": 1, "tail": tail or "all"}
            response = api._get(api._url("/containers/{0}/logs", container_id), params=params)
            return api._get_result_tty(False, response, False)

        return self.call("read logs", read)

    def remove(self, container_id: str) -> None:
        """Remove the container and its anonymous volumes; one already gone is no error."""
        try:
            self.call("remove container", self.client.api.remove_container, container_id,
                      force=True, v=True)
        except NotFound:
            return
        log.info("removed container %s", container_id[:12])
