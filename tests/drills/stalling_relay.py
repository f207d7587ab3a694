"""A control consumer whose relay stops for good between the broker's confirms of a batch
and its mark, for the drill's SIGKILL to find it there:

    python -m tests.drills.stalling_relay MARKER [BATCHES]

It is the real control consumer (``python -m orchestration control``) with one change: once
the relay has marked BATCHES batches QUEUED (default 1), the next batch the broker confirms
is written to MARKER (its process ids, one a line) and the relay thread then waits there,
its batch unmarked, until it is killed.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path


def stall_after(marker: Path, batches: int) -> None:
    from apps.processes import relay

    seen = [0]

    def confirmed(batch) -> None:
        seen[0] += 1
        if seen[0] <= batches:
            return
        draft = marker.with_suffix(".draft")
        draft.write_text("".join(f"{process.pk}\n" for process in batch))
        draft.rename(marker)  # whole, or not there: the drill reads it as soon as it appears
        threading.Event().wait()  # the batch stays confirmed and unmarked until the SIGKILL

    relay.batch_confirmed = confirmed


def main() -> None:
    marker, batches = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestration.settings")
    import django

    django.setup()
    stall_after(marker, batches)
    from orchestration.__main__ import main as orchestration_main

    orchestration_main(["control"])


if __name__ == "__main__":
    main()
