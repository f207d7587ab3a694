"""A worker whose events reach the control plane duplicated, late and out of order:

    python -m tests.drills.chaos_worker --pool local

It is the real worker (``python -m workers``) with one change: what its tasks hand to
``send_events`` goes through :class:`Chaos`, which sends every batch twice, holds each batch
back until the next one has gone (so batches arrive newest first), and once a process has
ended sends its earliest news again (its submission, its first log bytes).
"""

from __future__ import annotations

import os
import sys
import threading
import time

from workers.contract import Event, is_terminal

HOLD_MAX_S = 1.0  # a batch is never held longer than this, so the last one arrives too


class Chaos:
    def __init__(self, send):
        self.send = send
        self.lock = threading.Lock()
        self.held: list[tuple[float, object, list[Event]]] = []
        self.earliest: dict[str, list[Event]] = {}
        threading.Thread(target=self._flush_old, daemon=True).start()

    def __call__(self, app, events: list[Event]) -> None:
        replay = []
        with self.lock:
            for event in events:
                first = self.earliest.setdefault(event.process_id, [])
                if not first or (event.log and not any(e.log for e in first)):
                    first.append(event)
                if event.state and is_terminal(event.state):
                    replay += first
            self.held.append((time.monotonic(), app, events))
            due = self.held if len(self.held) >= 2 else []
            if due:
                self.held = []
        for _, held_app, batch in reversed(due):  # newest first
            self.send(held_app, batch)
            self.send(held_app, batch)
        if replay:
            self.send(app, replay)  # stale news after the end

    def _flush_old(self) -> None:
        while True:
            time.sleep(0.2)
            with self.lock:
                old = [h for h in self.held if time.monotonic() - h[0] > HOLD_MAX_S]
                self.held = [h for h in self.held if h not in old]
            for _, app, batch in old:
                self.send(app, batch)
                self.send(app, batch)


if __name__ == "__main__":
    # The worker's app reads its pool when first imported: set it as ``workers.__main__`` does.
    pool = sys.argv[sys.argv.index("--pool") + 1]
    os.environ["ORCH_POOL"], os.environ["ORCH_TARGET"] = pool, pool.split("-")[0]
    from workers import tasks
    from workers.__main__ import main

    tasks.send_events = Chaos(tasks.send_events)
    main()
