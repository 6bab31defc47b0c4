"""Database down: /readyz and every route answer 503 with Retry-After, not a stack trace."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from commonpool.api.app import create_app
from commonpool.scheduler.config import Settings
from tests.conftest import free_port


def test_database_down_is_503_with_retry_after(tmp_path: Path) -> None:
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    app = create_app(Settings(database_url=dead, state_dir=tmp_path))
    # Any credential: checking it needs the database, which is down.
    with TestClient(app, headers={"Authorization": "Bearer cpu_unchecked"}) as client:
        assert client.get("/healthz").status_code == 200
        for method, path, body in [("GET", "/readyz", None), ("GET", "/api/v1/jobs", None),
                                   ("POST", "/api/v1/jobs",
                                    {"name": "x", "entrypoint": "a.b:c"})]:
            response = client.request(method, path, json=body)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["retry-after"]
            assert response.json()["code"] == "unavailable"
