"""What a job spec says about data (``JobSpec.inputs`` and ``JobSpec.outputs``, shaped by
``workers.contract``): each dataset the process names, where its bytes are and the file name
it gets in the job's inputs dir; and where the job's outputs go. With ``data_access: url`` in
the pool's settings, signed URLs on the control plane too (``apps.datasets.data_urls``)."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings

from apps.datasets.data_urls import data_access_by_url, input_url, upload_url
from workers.data_contract import OutputsSpec, StagedInput

# A staged file's name keeps only these characters; an extension at most this long.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
EXTENSION_MAX = 16


def outputs_prefix(process_id) -> str:
    return f"outputs/{process_id}/"


def staged_name(pointer: str, dataset_name: str) -> str:
    """``/files/1`` of ``reads.fastq`` -> ``files-1.fastq``: from the field, never from a
    name a client chose, but with its dataset's extension (a job may go by it)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    stem = _UNSAFE.sub("_", "-".join(parts)).strip("._") or "input"
    extension = PurePosixPath(dataset_name).suffix
    if len(extension) > EXTENSION_MAX or _UNSAFE.search(extension):
        extension = ""
    return stem + extension


def job_inputs(process, pool_settings: dict) -> list[dict[str, Any]]:
    """One StagedInput dict per dataset the process's config names, in the config's order."""
    by_url = data_access_by_url(pool_settings)
    # Through the relation, which the senders of specs prefetch for a whole batch (one query,
    # not one per process); in the order the uses were recorded, the config's.
    uses = sorted(process.dataset_uses.all(), key=lambda use: use.pk)
    inputs: list[dict[str, Any]] = []
    names: set[str] = set()
    for use in uses:
        name = staged_name(use.pointer, use.dataset.name)
        if name in names:  # "/a-b" and "/a/b" read alike: the second gets a number
            suffix = PurePosixPath(name).suffix
            stem = name[:len(name) - len(suffix)]
            name = next(candidate for n in range(2, len(names) + 3)
                        if (candidate := f"{stem}-{n}{suffix}") not in names)
        names.add(name)
        dataset = use.dataset
        inputs.append(asdict(StagedInput(
            pointer=use.pointer, name=name, dataset=str(dataset.pk), key=dataset.storage_key,
            size=dataset.size, sha256=dataset.sha256,
            url=input_url(process.pk, dataset.pk) if by_url else "")))
    return inputs


def job_outputs(process, pool_settings: dict) -> dict[str, Any]:
    by_url = data_access_by_url(pool_settings)
    return asdict(OutputsSpec(prefix=outputs_prefix(process.pk),
                              max_bytes=settings.OUTPUT_MAX_BYTES,
                              upload_url=upload_url(process.pk) if by_url else ""))
