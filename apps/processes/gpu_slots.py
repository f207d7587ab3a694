"""GPU slots of a pool that counts them (its file's ``gpus``): which devices its admitted
processes hold, and which devices the next ones in admission's order get. Admission
(``apps.processes.admission``) decides with these under the pool's row lock; ``waiting.py``
reads them to say that a process waits for GPUs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db.models import QuerySet

from apps.processes.models import Process


def devices_held(held: QuerySet[Process]) -> set[str]:
    """The devices the processes of ``held`` (a pool's admitted, not ended ones) hold."""
    found: set[str] = set()
    for devices in held.exclude(gpu_devices=[]).values_list("gpu_devices", flat=True):
        found.update(devices)
    return found


def gpus_asked(ids: Iterable) -> dict:
    """Process id -> how many GPUs it asks: its own ``resources``, else its pipeline
    version's."""
    rows = Process.objects.filter(pk__in=list(ids)).values_list(
        "pk", "resources", "pipeline_version__resources")
    return {pk: int({**(version or {}), **(own or {})}.get("gpus") or 0)
            for pk, own, version in rows}


def place(devices: Sequence[str], held: set[str], order: Sequence[tuple[object, int]]
          ) -> tuple[dict, int | None]:
    """Give the processes of ``order`` ((id, GPUs asked), in admission's order) free devices
    of ``devices``, in order, while they fit: ({id: its devices}, the index in ``order`` of
    the first that does not fit, or None). The first that does not fit stops the rest, so a
    job asking for two GPUs is not passed over for ever by jobs asking for one."""
    free = [device for device in devices if device not in held]
    placed: dict = {}
    for index, (pk, gpus) in enumerate(order):
        if gpus > len(free):
            return placed, index
        placed[pk], free = free[:gpus], free[gpus:]
    return placed, None


def placed_on_gpus(pool_devices: Sequence[str], held: QuerySet[Process], chosen: list) -> list:
    """Of ``chosen`` (ids admission would admit now, in its order), those whose GPUs fit,
    each given its devices (saved on it: call under the pool's lock, in admission's
    transaction)."""
    asked = gpus_asked(chosen)
    placed, _ = place(pool_devices, devices_held(held), [(pk, asked.get(pk, 0)) for pk in chosen])
    for pk, devices in placed.items():
        if devices:
            Process.objects.filter(pk=pk).update(gpu_devices=devices)
    return list(placed)
