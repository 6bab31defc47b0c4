"""CLI processes against a live server authenticate with the pool's admin token (env)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def cli_token(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "live_server" in request.fixturenames:
        monkeypatch.setenv("COMMONPOOL_TOKEN", request.getfixturevalue("admin_token"))
