"""Staging artifacts on a node over real HTTP: once per node, resumed, verified, unpacked safely."""

from __future__ import annotations

import io
import tarfile
import threading
from pathlib import Path

import pytest

from commonpool.api.client import transfer
from commonpool.api.client.sdk import Client
from commonpool.scheduler.ports import InputArtifact
from commonpool.workers.artifacts import stage
from tests.conftest import LiveServer

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # HTTP is the point


@pytest.fixture
def client(live_server: LiveServer, admin_token: str) -> Client:
    with Client(live_server.url, token=admin_token) as c:
        yield c


@pytest.fixture
def published(client: Client, tmp_path: Path) -> InputArtifact:
    source = tmp_path / "data"
    (source / "nested").mkdir(parents=True)
    (source / "digits.npz").write_bytes(bytes(range(256)) * 400)
    (source / "nested" / "README").write_text("digits, 8x8\n")
    row = client.upload_artifact(source, "digits-data", kind="dataset", format="npz")
    return InputArtifact(row.name, row.version, "dataset", row.sha256, row.size_bytes)


def downloads(client: Client, ref: str) -> int:
    return client.get_artifact(ref).downloads


@SQLITE
def test_a_node_fetches_once_and_unpacks_the_directory(
    client: Client, published: InputArtifact, tmp_path: Path
) -> None:
    cache = tmp_path / "node-a"
    where = stage(client, published, cache)
    assert (where / "digits.npz").read_bytes() == bytes(range(256)) * 400
    assert (where / "nested" / "README").read_text() == "digits, 8x8\n"
    assert sorted(p.name for p in where.iterdir()) == ["digits.npz", "nested"]
    assert stage(client, published, cache) == where
    assert downloads(client, published.ref) == 1
    stage(client, published, tmp_path / "node-b")  # another node: its own download
    assert downloads(client, published.ref) == 2


@SQLITE
def test_workers_on_one_node_share_one_download(
    client: Client, published: InputArtifact, tmp_path: Path
) -> None:
    cache = tmp_path / "node"
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(stage(client, published, cache)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 4
    assert downloads(client, published.ref) == 1


@SQLITE
def test_a_corrupted_partial_download_is_detected_by_hash_and_fetched_again(
    client: Client, published: InputArtifact, tmp_path: Path
) -> None:
    cache = tmp_path / "node"
    partial = cache / "partial" / f"{published.sha256}.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\xff" * 1000)  # a broken earlier download: resumed, then rejected
    where = stage(client, published, cache)
    assert (where / "digits.npz").read_bytes() == bytes(range(256)) * 400
    assert not partial.exists()
    assert downloads(client, published.ref) == 1  # the resumed try started past byte 0


@SQLITE
def test_a_good_partial_download_is_resumed(
    client: Client, published: InputArtifact, tmp_path: Path
) -> None:
    whole = tmp_path / "whole.tar"
    client.download_artifact(published.ref, published.sha256, whole)
    cache = tmp_path / "node"
    partial = cache / "partial" / f"{published.sha256}.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(whole.read_bytes()[:5000])
    stage(client, published, cache)
    assert downloads(client, published.ref) == 1  # only the first, whole download


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_unpacking_refuses_what_could_write_outside_the_target(tmp_path: Path, kind: str) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        if kind == "symlink":
            link = tarfile.TarInfo("escape")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc"
            tar.addfile(link)
        else:
            info = tarfile.TarInfo("../outside.txt" if kind == "dotdot" else "/tmp/outside.txt")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(transfer.UnsafeArchive):
        transfer.unpack(archive, tmp_path / "target")
    assert not (tmp_path / "outside.txt").exists()
    assert list((tmp_path / "target").iterdir()) == []
