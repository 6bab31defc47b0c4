"""Job arrays from the command line: submit FILE, jobs --array, cancel arr_..., array ID."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.test_cli import CLI, run


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_submit_list_show_and_cancel_an_array(  # type: ignore[no-untyped-def]
    live_server, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("name: grid\nkind: command\ncommand: ./train.sh\n"
                     "sweep: {lr: [0.1, 0.01], depth: [2, 4]}\nmax_running: 2\n")
    human = run(live_server.url, "submit", str(sweep)).stdout
    array_id = human.split("submitted array ", 1)[1].split()[0]
    assert array_id.startswith("arr_") and "4 tasks, at most 2 at once; 4 QUEUED" in human
    assert f"commonpool jobs --array {array_id}" in human
    listed = json.loads(run(live_server.url, "jobs", "--array", array_id, "--json").stdout)
    assert sorted((j["args"]["lr"], j["args"]["depth"]) for j in listed["items"]) == [
        (0.01, 2), (0.01, 4), (0.1, 2), (0.1, 4)
    ]
    assert "grid[3]" in run(live_server.url, "jobs", "--array", array_id).stdout

    shown = json.loads(run(live_server.url, "array", array_id, "--json").stdout)
    assert shown["by_state"] == {"QUEUED": 4}

    cancelled = json.loads(run(live_server.url, "cancel", array_id, "--json").stdout)
    assert cancelled["by_state"] == {"CANCELLED": 4}
    missing = run(live_server.url, "cancel", "arr_missing", check=False)
    assert missing.returncode == 3 and "not-found" in missing.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_submit_array_json_and_wait(live_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "array.toml"
    spec.write_text('name = "chunks"\nkind = "command"\ncommand = ["true"]\narray = "1-3"\n')
    array = json.loads(run(live_server.url, "submit", str(spec), "--json").stdout)
    assert (array["tasks"], array["limit"], array["by_state"]) == (3, None, {"QUEUED": 3})
    run(live_server.url, "cancel", array["id"])
    # --wait returns once every task is final, and exits 1 unless all succeeded
    env = {**os.environ, "COLUMNS": "200"}
    waiting = subprocess.Popen([*CLI, "--server", live_server.url, "submit", str(spec), "--wait"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            queued = json.loads(run(live_server.url, "jobs", "--json", "--state", "queued").stdout)
            if queued["items"]:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        run(live_server.url, "cancel", queued["items"][0]["array_id"])
        out, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == 1, err
    assert "ended:" in out and "3 CANCELLED" in out
