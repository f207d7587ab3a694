"""The admission benchmark still runs, at its small size, and admits exactly what the freed
slots allow. Nothing here is timed: a figure of the small size means nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e


def test_the_small_admission_benchmark_reports_its_figures(tmp_path):
    out = tmp_path / "admission.json"
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "bench.admission", "--small",
         "--database", "orchestration_bench_admission_smoke",
         "--vhost", "orchestration-bench-admission-smoke", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    figures = json.loads(out.read_text())
    assert figures["admitted"] == figures["rounds"] * figures["capacity"]
    for key in ("admitted_per_s", "decided_per_s", "full_pool_call_ms_p50"):
        assert figures[key] > 0, figures
    assert "<!-- bench.admission -->" in done.stdout
    assert (ROOT / "docs" / "benchmarks.md").read_text() == page  # the small size keeps it
