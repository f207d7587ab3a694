"""The benchmark still runs, at its small size: every row of the table is reported. Nothing
here is timed or compared: a figure of the small size means nothing, and a benchmark never
fails the suite on time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import ROW_IDS

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e

# Rows the bench measures on its own (the API, the local pool, PostgreSQL, memory); the other
# targets' rows may say why they were not measured where an engine is missing.
ALWAYS_MEASURED = {"submit_throughput", "submit_latency", "end_to_end", "start_latency_local",
                   "status_read", "detail_read", "list_read", "list_page_100",
                   "list_filtered", "rss_web", "rss_worker"}


def test_the_small_benchmark_reports_every_row(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--small", "--database", "orchestration_bench_smoke",
         "--vhost", "orchestration-bench-smoke", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    rows = json.loads(out.read_text())["rows"]
    assert [row["id"] for row in rows] == list(ROW_IDS)
    for row in rows:
        assert row["ours"], row
        assert row["measure"] in done.stdout, f"{row['id']} is missing from the printed table"
        if row["id"] in ALWAYS_MEASURED:
            assert not row["ours"].startswith("not measured"), row
    baselines = {row["id"]: row["baseline"] for row in rows}
    assert baselines["submit_throughput"].startswith("plain DRF POST")
    assert baselines["end_to_end"].startswith("raw Celery")
