"""`commonpool demo` (what `make demo` runs) trains to the end and prints its summary.

README promises this on a fresh machine; the security work once broke it (it charged a
project the bootstrap never makes) without any test noticing. A short run (2 epochs)
goes through the same pool, job and summary code as the full demo.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_demo_trains_to_the_end_and_prints_loss_time_energy_and_carbon() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "commonpool", "demo", "--epochs", "2"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "demo summary" in out and "SUCCEEDED" in out
    for row in ("final loss", "training time", "wall time", "nodes used", "energy", "carbon"):
        assert row in out, row
