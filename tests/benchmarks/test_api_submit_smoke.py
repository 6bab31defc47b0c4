"""Smoke test of `python -m benchmarks.api_submit`: a real uvicorn process, a few submits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_api_submit_benchmark_runs_on_sqlite() -> None:
    cmd = [
        sys.executable, "-m", "benchmarks.api_submit", "--backend", "sqlite",
        "--requests", "40", "--warmup", "10", "--concurrency", "4", "--workers", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "api_submit"
    [run] = result["runs"]
    assert run["backend"] == "sqlite" and run["workers"] == 1
    assert run["ok"] == run["requests"] == 40
    assert run["errors"] == {}
    # Warm-up and measured submits were all stored, each with its first event.
    assert run["jobs_stored"] == run["events_stored"] == 50
    assert run["submits_per_s"] > 0
    assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["max_ms"]
