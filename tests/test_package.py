"""The install maps the folders under `commonpool.`; no bare generic names leak out."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from commonpool.scheduler.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd="/", timeout=60)


def test_folders_import_under_commonpool_only() -> None:
    ok = _python("import commonpool.scheduler, commonpool.api, commonpool.workers, "
                 "commonpool.migrations; print('ok')")
    assert ok.stdout.strip() == "ok", ok.stderr
    for bare in ("api", "scheduler", "workers", "migrations"):
        assert _python(f"import {bare}").returncode != 0, f"bare `{bare}` is importable"


def test_torch_is_pinned_exactly() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.13.0" in deps
    assert all("==" in d for d in deps), "every runtime dependency is pinned"


def test_settings_from_toml_file_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('server_url = "http://pool.example:9000"\npolicy = "las"\nport = 9000\n')
    monkeypatch.setenv("COMMONPOOL_CONFIG", str(config))
    monkeypatch.setenv("COMMONPOOL_POLICY", "fair")
    settings = Settings()
    assert settings.server_url == "http://pool.example:9000"  # from the file
    assert settings.port == 9000
    assert settings.policy == "fair"  # the environment wins over the file
