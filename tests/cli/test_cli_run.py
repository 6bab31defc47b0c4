"""`commonpool run`: command jobs from the command line (real executable, real server)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from commonpool.api.cli.main import app
from commonpool.api.cli.run import build_spec, command_value, default_name, parse_after
from commonpool.api.client.errors import ConnectionFailed
from tests.cli.test_cli import run
from tests.conftest import free_port


def test_after_takes_slurm_style_types_and_id_lists() -> None:
    assert parse_after(["ok:job_a,job_b", "any:arr_c", "fail:job_d"]) == [
        {"type": "ok", "job": "job_a"},
        {"type": "ok", "job": "job_b"},
        {"type": "any", "job": "arr_c"},
        {"type": "fail", "job": "job_d"},
    ]
    for bad in ("job_a", "ok:", "afterok:job_a", "maybe:job_a", "ok:job a", "ok:job_a,,job_b"):
        with pytest.raises(typer.BadParameter):
            parse_after([bad])


def test_one_argument_with_shell_syntax_is_a_shell_string_several_are_argv() -> None:
    assert command_value(["echo a && echo b"]) == "echo a && echo b"
    assert command_value(["ls|wc"]) == "ls|wc"
    assert command_value(["./train.sh"]) == ["./train.sh"]
    assert command_value(["echo", "a b", "$HOME"]) == ["echo", "a b", "$HOME"]
    assert build_spec(["echo a && echo b"]).command == ["/bin/sh", "-c", "echo a && echo b"]
    spec = build_spec(["python3", "train.py"], cpus=2, memory="1GiB", env=["A=1=2"],
                      after=["ok:job_x"], max_runtime=60)
    assert spec.kind == "command" and spec.command == ["python3", "train.py"]
    assert spec.resources.cpus == 2 and spec.resources.memory_bytes == 2**30
    assert spec.env == {"A": "1=2"} and spec.max_runtime_s == 60
    assert [(d.type, d.job) for d in spec.after] == [("ok", "job_x")]
    assert default_name(["/usr/bin/python3.11", "x"]) == "python3.11"
    assert default_name(["  'weird name' && ls"]) == "weird"


def test_bad_input_is_a_clean_usage_error() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # never reached: the input is refused first
    result = run(nowhere, "run", "--array", "5-1", "--", "echo", "hi", check=False)
    assert result.returncode == 2 and "--array" in result.stderr, result.stderr
    assert "empty array range" in result.stderr and "Traceback" not in result.stderr
    runner = CliRunner()
    for args, where in (
        (["--array", "1-3%0"], "--array"),
        (["--after", "ok"], "--after"),
        (["--memory", "2XB"], "--memory"),
        (["--env", "NOVALUE"], "--env"),
        (["--cpus", "0"], "--cpus"),
        (["--name", "no spaces"], "--name"),
    ):
        result = runner.invoke(app, ["--server", nowhere, "run", *args, "--", "echo", "hi"])
        assert result.exit_code == 2, (args, result.output)
        assert where in result.output, (args, result.output)
    # --wait works for arrays too (as for `submit`): the input is fine, the server absent.
    args = ["--server", nowhere, "run", "--array", "1-3", "--wait", "--", "true"]
    result = runner.invoke(app, args)
    assert isinstance(result.exception, ConnectionFailed), result.output


def test_help_lists_the_options() -> None:
    out = run(None, "run", "--help").stdout
    for option in ("--name", "--cpus", "--gpus", "--memory", "--gpu-type", "--project", "--env",
                   "--working-dir", "--priority", "--max-runtime", "--array", "--after",
                   "--wait", "--no-wait", "--json", "/bin/sh -c"):
        assert option in out, option
    assert "run" in run(None, "--help").stdout


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_run_submits_argv_shell_strings_and_dependencies(live_server) -> None:  # type: ignore[no-untyped-def]
    argv = json.loads(run(live_server.url, "run", "--json", "--cpus", "0.5", "--env", "K=v",
                          "--", "echo", "a b", "-n").stdout)
    assert argv["kind"] == "command" and argv["command"] == ["echo", "a b", "-n"]
    assert argv["name"] == "echo" and argv["entrypoint"] is None
    assert argv["cpus_per_worker"] == 0.5 and argv["workers_max"] == 1
    # No `--`: options end at the command's first word, the rest is the command's.
    plain = json.loads(run(live_server.url, "run", "--json", "ls", "-l", "--name", "x").stdout)
    assert plain["command"] == ["ls", "-l", "--name", "x"] and plain["name"] == "ls"
    shell = json.loads(run(live_server.url, "run", "--json", "--name", "two-steps", "--after",
                           f"ok:{argv['id']},{plain['id']}", "--", "echo a && echo b").stdout)
    assert shell["command"] == ["/bin/sh", "-c", "echo a && echo b"]
    assert shell["name"] == "two-steps"
    human = run(live_server.url, "run", "--", "true").stdout
    assert "submitted job_" in human and "commonpool logs -f job_" in human


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_run_with_array_submits_one_array(live_server) -> None:  # type: ignore[no-untyped-def]
    array = json.loads(run(live_server.url, "run", "--json", "--array", "1-3%2", "--",
                           "echo", "task").stdout)
    assert array["id"].startswith("arr_") and array["tasks"] == 3 and array["limit"] == 2
    human = run(live_server.url, "run", "--array", "0-15:4", "--name", "grid", "--",
                "echo task").stdout
    assert "submitted array arr_" in human and "(grid): 4 tasks" in human
