"""The artifact store on S3-compatible object storage: a real S3 server (moto's, on loopback)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from commonpool.api.app import create_app
from commonpool.scheduler.config import Settings
from commonpool.scheduler.store.uow import Database
from tests.conftest import free_port

BUCKET = "pool-artifacts"
DATA = bytes(range(256)) * 1000
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@SQLITE
def test_artifacts_round_trip_through_an_s3_bucket(
    settings: Settings, db: Database, admin_headers: dict[str, str], s3_endpoint: str
) -> None:
    import boto3

    s3_settings = settings.model_copy(
        update={"artifacts_url": f"s3://{BUCKET}/pool", "artifacts_s3_endpoint": s3_endpoint}
    )
    with TestClient(create_app(s3_settings, db), headers=admin_headers) as client:
        made = client.post("/api/v1/artifacts", params={"name": "blob", "kind": "dataset"},
                           content=DATA)
        assert made.status_code == 201, made.text
        sha = hashlib.sha256(DATA).hexdigest()
        assert made.json()["sha256"] == sha
        keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint)
                .list_objects_v2(Bucket=BUCKET)["Contents"]]
        assert keys == [f"pool/sha256/{sha[:2]}/{sha}"]
        whole = client.get("/api/v1/artifacts/blob@1/content")
        assert whole.status_code == 200 and whole.content == DATA
        rest = client.get("/api/v1/artifacts/blob@1/content", headers={"Range": "bytes=100000-"})
        assert rest.status_code == 206 and rest.content == DATA[100000:]
        # a second version with the same bytes is stored once
        assert client.post("/api/v1/artifacts", params={"name": "blob", "kind": "dataset"},
                           content=DATA).json()["ref"] == "blob@2"
        assert len(boto3.client("s3", endpoint_url=s3_endpoint)
                   .list_objects_v2(Bucket=BUCKET)["Contents"]) == 1
