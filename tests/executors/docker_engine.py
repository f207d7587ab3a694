"""Cleaning up after Docker tests, on a real engine."""

from __future__ import annotations

import time

from docker.errors import APIError, NotFound


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
