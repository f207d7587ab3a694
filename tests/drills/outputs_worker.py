"""A worker that can be caught storing a job's outputs:

    python -m tests.drills.outputs_worker --pool local

It is the real worker (``python -m workers``) with one change: each output file it stores is
noted in the ledger ``DRILL_STORE_LEDGER`` (``<key>``), and while the file ``DRILL_STALL``
exists it stops right after the first file of a job, as if the store had gone slow: a drill
kills it there, with the job ended and its outputs half stored.
"""

from __future__ import annotations

import os
import sys
import time

if __name__ == "__main__":
    # The worker's app reads its pool when first imported: set it as ``workers.__main__`` does.
    pool = sys.argv[sys.argv.index("--pool") + 1]
    os.environ["ORCH_POOL"], os.environ["ORCH_TARGET"] = pool, pool.split("-")[0]
    from workers import outputs
    from workers.__main__ import main

    store = outputs._store

    def noted_store(*args, **kwargs):
        stored = store(*args, **kwargs)
        fd = os.open(os.environ["DRILL_STORE_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{stored.key}\n".encode())
        os.close(fd)
        while os.path.exists(os.environ["DRILL_STALL"]):
            time.sleep(0.1)
        return stored

    outputs._store = noted_store
    main()
