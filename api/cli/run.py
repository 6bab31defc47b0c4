"""`commonpool run`: submit a command job (or an array of them) from the command line.

    commonpool run --cpus 2 --memory 4GiB -- python train.py --lr 0.1
    commonpool run --after ok:job_ab12 -- 'make data && python eval.py'

Several arguments are the command's argv; one argument with spaces or shell
syntax runs through `/bin/sh -c`. The command runs once, on one node.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import typer
from pydantic import ValidationError

from commonpool.scheduler.spec import Dependency, JobSpec, parse_array, parse_memory

from .context import JsonOption, state
from .jobs import submit_and_report

# Options end at the command's first word: `run -- ls -l` and `run ls -l` both pass `-l` on.
CONTEXT_SETTINGS = {"allow_interspersed_args": False}
_SHELL_SYNTAX = re.compile(r"[\s|&;<>()$`\\\"'*?\[\]#~{}]")
_DEPENDENCY_TYPES = ("ok", "any", "fail")


def parse_after(values: list[str]) -> list[dict[str, str]]:
    """Slurm-style dependencies: `ok:ID[,ID]`, `any:ID`, `fail:ID` (each option repeatable)."""
    out: list[dict[str, str]] = []
    for value in values:
        kind, sep, ids = value.partition(":")
        if not sep or kind not in _DEPENDENCY_TYPES or not ids:
            raise typer.BadParameter(
                f"expected ok:ID[,ID], any:ID or fail:ID, got {value!r}", param_hint="--after"
            )
        for job_id in ids.split(","):
            try:
                Dependency(type=kind, job=job_id.strip())  # type: ignore[arg-type]
            except ValidationError as exc:
                raise typer.BadParameter(
                    f"not a job or array id: {job_id!r}", param_hint="--after"
                ) from exc
            out.append({"type": kind, "job": job_id.strip()})
    return out


def parse_env(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` pairs, the value kept as text."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--env")
        out[key] = value
    return out


def command_value(args: list[str]) -> str | list[str]:
    """One argument with spaces or shell syntax: a string, which the spec runs with
    `/bin/sh -c`; otherwise the argv as given."""
    if len(args) == 1 and _SHELL_SYNTAX.search(args[0]):
        return args[0]
    return list(args)


def default_name(args: list[str]) -> str:
    """The job's name when none is given: the program's name, made a valid job name."""
    first = args[0].split()[0] if args[0].split() else "command"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", PurePosixPath(first).name).lstrip("._-")
    return name[:100] or "command"


def _checked(value: str | None, parse: Any, hint: str) -> None:
    if value is None:
        return
    try:
        parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from exc


def build_spec(
    command: list[str],
    *,
    name: str | None = None,
    cpus: float | None = None,
    gpus: int | None = None,
    memory: str | None = None,
    gpu_type: str | None = None,
    project: str | None = None,
    env: list[str] | None = None,
    working_dir: str | None = None,
    priority: int | None = None,
    max_runtime: int | None = None,
    array: str | None = None,
    after: list[str] | None = None,
) -> JobSpec:
    """The JobSpec of `commonpool run`; bad input raises a usage error (exit 2)."""
    if not command:
        raise typer.BadParameter("give the command to run after --", param_hint="CMD")
    _checked(memory, parse_memory, "--memory")
    _checked(array, parse_array, "--array")
    resources: dict[str, Any] = {
        key: value
        for key, value in (
            ("cpus", cpus),
            ("gpus", gpus),
            ("memory_bytes", memory),
            ("gpu_type", gpu_type),
        )
        if value is not None
    }
    data: dict[str, Any] = {
        "name": name or default_name(command),
        "kind": "command",
        "command": command_value(command),
        "resources": resources,
        "env": parse_env(env or []),
        "after": parse_after(after or []),
    }
    for key, value in (
        ("project", project),
        ("working_dir", working_dir),
        ("priority", priority),
        ("max_runtime_s", max_runtime),
        ("array", array),
    ):
        if value is not None:
            data[key] = value
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        errors = [(_option_of(err["loc"]), err["msg"]) for err in exc.errors()]
        if len(errors) == 1:
            raise typer.BadParameter(errors[0][1], param_hint=errors[0][0]) from exc
        raise typer.BadParameter("; ".join(f"{opt}: {msg}" for opt, msg in errors)) from exc


_OPTIONS = {
    "resources.memory_bytes": "--memory",
    "max_runtime_s": "--max-runtime",
    "command": "CMD",
}


def _option_of(loc: tuple[int | str, ...]) -> str:
    """The option behind a JobSpec field (`resources.cpus` -> `--cpus`)."""
    field = ".".join(str(part) for part in loc[:2])
    if field in _OPTIONS:
        return _OPTIONS[field]
    if not loc:
        return "the job spec"
    last = str(loc[1] if loc[0] == "resources" and len(loc) > 1 else loc[0])
    return "--" + last.replace("_", "-")


def run(
    command: list[str] = typer.Argument(
        ...,
        metavar="CMD",
        help="The command: several arguments are its argv; one argument with spaces or "
        "shell syntax ('a && b') runs with /bin/sh -c.",
        show_default=False,
    ),
    name: str | None = typer.Option(None, help="Job name (default: the program's name)."),
    cpus: float | None = typer.Option(None, help="CPUs to hold (default 1)."),
    gpus: int | None = typer.Option(None, min=0, help="GPUs to hold (default 0)."),
    memory: str | None = typer.Option(None, help="Memory to hold, e.g. 2GiB."),
    gpu_type: str | None = typer.Option(None, help="Only nodes with this GPU type."),
    project: str | None = typer.Option(
        None, help="Project the job is charged to (default: your only project)."
    ),
    env: list[str] = typer.Option([], "--env", help="Environment variable KEY=VALUE (repeat)."),
    working_dir: str | None = typer.Option(
        None, help="Directory shipped to the node; the command runs in it."
    ),
    priority: int | None = typer.Option(None, help="Higher runs first."),
    max_runtime: int | None = typer.Option(
        None, min=1, metavar="SECONDS", help="Runtime limit in seconds."
    ),
    array: str | None = typer.Option(
        None,
        help="Run as a job array, Slurm-style: 1-100, 0-15:4, 1,3,5-7; %N runs at most N at "
        "once (e.g. 1-100%10).",
    ),
    after: list[str] = typer.Option(
        [],
        "--after",
        help="Start after other jobs or arrays end: ok:ID[,ID] (succeeded), fail:ID (failed),"
        " any:ID (any end); repeat for more.",
    ),
    wait: bool = typer.Option(
        False,
        "--wait/--no-wait",
        help="Wait for the job (or every task of the array) to end, print a job's last log "
        "lines; exit 1 unless it (or every task) succeeds.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run a command on one node of the pool (or, with --array, many tasks of it).

    Example: commonpool run --cpus 2 --memory 4GiB -- python train.py --lr 0.1
    """
    spec = build_spec(
        command,
        name=name,
        cpus=cpus,
        gpus=gpus,
        memory=memory,
        gpu_type=gpu_type,
        project=project,
        env=env,
        working_dir=working_dir,
        priority=priority,
        max_runtime=max_runtime,
        array=array,
        after=after,
    )
    with state.client() as client:
        submit_and_report(client, spec, wait=wait, as_json=as_json)
