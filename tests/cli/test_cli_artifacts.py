"""Artifacts from the command line: upload, list, show, set, download (resumed), submit flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import run

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE
def test_upload_list_show_set_and_download(live_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "corpus"
    (data / "part").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "part" / "b.txt").write_text("beta\n")
    out = run(live_server.url, "artifacts", "upload", str(data), "--name", "corpus",
              "--licence", "CC-BY-4.0", "--description", "two small files").stdout
    assert "published corpus@1" in out and "--dataset corpus@1" in out
    listed = json.loads(run(live_server.url, "artifacts", "list", "--json").stdout)
    assert [(a["ref"], a["kind"], a["licence"]) for a in listed] == [
        ("corpus@1", "dataset", "CC-BY-4.0")
    ]
    shown = run(live_server.url, "artifacts", "show", "corpus").stdout
    assert "corpus@1" in shown and "two small files" in shown and "0 jobs started" in shown
    made = run(live_server.url, "artifacts", "set", "corpus@1", "--visibility", "public").stdout
    assert "public" in made

    target = tmp_path / "out"
    target.mkdir()
    partial = target / ".corpus-1.tar.part"
    partial.write_bytes(b"\x00" * 10)  # a broken earlier try: resumed, rejected, fetched again
    got = run(live_server.url, "artifacts", "download", "corpus@1", "--to", str(target)).stdout
    assert "sha256 verified" in got
    assert (target / "corpus-1" / "part" / "b.txt").read_text() == "beta\n"
    assert not partial.exists()
    again = run(live_server.url, "artifacts", "download", "corpus@1", "--to", str(target),
                check=False)
    assert again.returncode != 0 and "exists" in again.stderr

    missing = run(live_server.url, "artifacts", "show", "nothing@3", check=False)
    assert missing.returncode == 3 and "not-found" in missing.stderr


@SQLITE
def test_submit_names_inputs_and_publish(live_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "w.pt").write_bytes(b"weights")
    run(live_server.url, "artifacts", "upload", str(tmp_path / "w.pt"), "--name", "base",
        "--kind", "model")
    run(live_server.url, "artifacts", "upload", str(tmp_path / "w.pt"), "--name", "data")
    job = json.loads(run(
        live_server.url, "submit", "--name", "tune", "--entrypoint", "a.b:c",
        "--dataset", "data", "--init-from", "base@1", "--publish", "tuned", "--json",
    ).stdout)
    assert job["publish"] == "tuned"
    wrong = run(live_server.url, "submit", "--name", "tune", "--entrypoint", "a.b:c",
                "--init-from", "data@1", check=False)
    assert wrong.returncode == 3 and "must be a model" in wrong.stderr
