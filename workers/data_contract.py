"""What moves a job's data, in the contract's messages: the datasets a job spec names
(``JobSpec.inputs``), where its outputs go (``JobSpec.outputs``) and what a worker stored
(``Event.outputs``). Imported by both sides, like ``workers.contract``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StagedInput:
    """One dataset a job reads (an entry of ``JobSpec.inputs``)."""

    # JSON pointer (RFC 6901) of the config value that names the dataset, e.g. "/input" or
    # "/files/1"; the worker replaces that value with the staged file's path.
    pointer: str
    # The file's name in the job's inputs dir (unique within the job, no slash).
    name: str
    dataset: str
    # The object's key in the store (``ORCH_STORAGE_URL``), for workers that reach the store.
    key: str
    size: int
    sha256: str
    # A signed, expiring URL the control plane serves the bytes at, for workers that reach
    # neither the store's path nor its bucket ("" when the pool does not need one).
    url: str = ""


@dataclass
class OutputsSpec:
    """Where a job's outputs are kept (``JobSpec.outputs``)."""

    # Key prefix in the store under which every file of the job's output dir is put.
    prefix: str
    max_bytes: int
    # A signed URL prefix the worker may PUT outputs to when it cannot reach the store.
    upload_url: str = ""


@dataclass
class StoredOutput:
    """One file a job wrote under its output dir, stored (an entry of ``Event.outputs``)."""

    path: str  # relative to the output dir, "/"-separated
    size: int
    sha256: str
    key: str
