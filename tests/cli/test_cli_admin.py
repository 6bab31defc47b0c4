"""`commonpool admin ...` and `whoami` through the real executable, against a live server."""

from __future__ import annotations

import json
import os

import pytest

from tests.cli.test_cli import run

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_admin_creates_a_user_with_a_token_who_then_submits(  # type: ignore[no-untyped-def]
    live_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = live_server.url
    admin = os.environ["COMMONPOOL_TOKEN"]  # set by tests/cli/conftest.py
    run(url, "admin", "create-user", "ada")
    run(url, "admin", "create-project", "vision", "--max-queued", "5")
    run(url, "admin", "add-member", "vision", "ada")
    token = json.loads(run(url, "admin", "create-token", "ada", "--json").stdout)
    assert token["token"].startswith("cpu_") and token["scopes"] == ["jobs:read", "jobs:write"]
    listed = run(url, "admin", "tokens", "--user", "ada").stdout
    assert token["id"] in listed and token["token"] not in listed
    monkeypatch.setenv("COMMONPOOL_TOKEN", token["token"])
    me = json.loads(run(url, "whoami", "--json").stdout)
    assert me["subject"] == "ada" and me["projects"] == {"vision": "member"}
    job = json.loads(run(url, "submit", "--name", "x", "--entrypoint", "a.b:c", "--json").stdout)
    assert job["project"] == "vision" and job["owner"] == "ada"
    denied = run(url, "admin", "users", check=False)
    assert denied.returncode == 3 and "forbidden" in denied.stderr
    monkeypatch.setenv("COMMONPOOL_TOKEN", admin)
    run(url, "admin", "revoke-token", token["id"])
    audit = json.loads(run(url, "admin", "audit", "--actor", "ada", "--json").stdout)
    assert [e["action"] for e in audit] == ["job.submit"]
    monkeypatch.setenv("COMMONPOOL_TOKEN", token["token"])
    refused = run(url, "whoami", check=False)
    assert refused.returncode == 3 and "revoked" in refused.stderr
