"""Work roots for local jobs in tests. Not under pytest's private tmp dir (mode 0700): a job
runs as a user of its own, which must be able to pass through every directory above its work
dir."""

from __future__ import annotations

import tempfile
from pathlib import Path


def reachable_work_root(prefix: str = "orch-work-") -> Path:
    """A new directory any user may pass through but not list (0711); the caller removes it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path
