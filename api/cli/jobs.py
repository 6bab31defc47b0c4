"""Researcher commands: submit, jobs, job, logs, cancel, array.

`array` is registered by `main.py` with the other job commands; a job file
with `array` or `sweep` is submitted as a job array by `submit`.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError
from rich.markup import escape

from commonpool.scheduler.spec import JobSpec

from ..client.sdk import Client
from . import render
from .context import EXIT_JOB_FAILED, EXIT_USAGE, JsonOption, state

WAIT_LOG_TAIL = 40  # a waited-for job's last log lines, printed when it ends

ARRAY_PREFIX = "arr_"


def _load_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path} must hold a mapping of job fields", param_hint="FILE")
    return data


def _overridden(fields: dict[str, Any], **flags: Any) -> dict[str, Any]:
    """`fields` with every flag the user gave (not None) set over the file's value."""
    fields.update({key: value for key, value in flags.items() if value is not None})
    return fields


def _parse_args(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs; values are parsed as JSON when they parse, else kept as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--arg")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def submit(
    file: Path | None = typer.Argument(
        None, exists=True, dir_okay=False, help="Job file (YAML or TOML) with JobSpec fields."
    ),
    name: str | None = typer.Option(None, help="Job name."),
    entrypoint: str | None = typer.Option(None, help="module:function of the training loop."),
    working_dir: str | None = typer.Option(None, help="Directory shipped to the workers."),
    workers: int | None = typer.Option(None, min=1, help="Number of DDP workers."),
    cpus: float | None = typer.Option(None, help="CPUs per worker."),
    memory: str | None = typer.Option(None, help="Memory per worker, e.g. 2GiB."),
    gpus: int | None = typer.Option(None, min=0, help="GPUs per worker."),
    gpu_type: str | None = typer.Option(None, help="Only nodes with this GPU type."),
    priority: int | None = typer.Option(None, help="Higher runs first."),
    project: str | None = typer.Option(
        None, help="Project the job is charged to (default: your only project)."
    ),
    owner: str | None = typer.Option(
        None, help="Submit on behalf of this user (admins only; default: you)."
    ),
    arg: list[str] = typer.Option([], "--arg", help="Config for the loop: key=value (repeat)."),
    dataset: list[str] = typer.Option(
        [], "--dataset", help="Dataset artifact NAME or NAME@VERSION for the workers (repeat)."
    ),
    init_from: str | None = typer.Option(
        None, help="Model artifact NAME or NAME@VERSION the loop starts from (job.init_dir())."
    ),
    publish: str | None = typer.Option(
        None, help="On success, publish the final checkpoint as this model artifact."
    ),
    wait: bool = typer.Option(False, help="Wait for the job to end; exit 1 unless it succeeds."),
    as_json: bool = JsonOption,
) -> None:
    """Submit a job from a file and/or flags (flags override the file)."""
    data = _load_file(file) if file else {}
    resources = _overridden(
        dict(data.get("resources") or {}),
        cpus=cpus, memory_bytes=memory, gpus=gpus, gpu_type=gpu_type,
    )  # fmt: skip
    if resources:
        data["resources"] = resources
    _overridden(
        data, name=name, entrypoint=entrypoint, working_dir=working_dir, workers=workers,
        priority=priority, project=project, owner=owner, init_from=init_from, publish=publish,
        datasets=dataset or None,
    )  # fmt: skip
    if arg:
        data["args"] = {**data.get("args", {}), **_parse_args(arg)}
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            render.err_console.print(f"[red]invalid job spec[/]: {where}: {err['msg']}")
        raise typer.Exit(EXIT_USAGE) from exc
    with state.client() as client:
        submit_and_report(client, spec, wait=wait, as_json=as_json)


def submit_and_report(client: Client, spec: JobSpec, *, wait: bool, as_json: bool) -> None:
    """Submit a job (or an array or sweep), say how to follow it, and with `wait` wait for
    its end (printing a job's last log lines): exit 1 unless it succeeded.

    `submit` and `run` both end here, so they report and wait alike.
    """
    if spec.is_array:
        _submit_array(client, spec, wait=wait, as_json=as_json)
        return
    job = client.submit_job(spec)
    if as_json and not wait:
        render.print_json(job)
        return
    if not as_json:
        render.console.print(f"submitted [bold]{job.id}[/] ({job.name}), {render.state(job.state)}")
        render.next_steps(follow=f"commonpool logs -f {job.id}",
                          status=f"commonpool job {job.id}", cancel=f"commonpool cancel {job.id}")
    if not wait:
        return
    job = client.wait(job.id, timeout_s=math.inf)
    if as_json:
        render.print_json(job)
    else:
        for line in client.logs(job.id, tail=WAIT_LOG_TAIL):
            print(line.line, flush=True)
        render.console.print(
            f"{job.id} ended {render.state(job.state)}"
            + (f": {escape(job.exit_reason.splitlines()[0])}" if job.exit_reason else "")
        )
    if job.state != "SUCCEEDED":
        raise typer.Exit(EXIT_JOB_FAILED)


def _submit_array(client: Client, spec: JobSpec, *, wait: bool, as_json: bool) -> None:
    """Submit an array or sweep; with `wait`, exit 1 unless every task succeeded."""
    array = client.submit_array(spec)
    if not as_json:
        render.console.print(f"submitted array {render.array_line(array)}")
        render.next_steps(tasks=f"commonpool jobs --array {array.id}",
                          status=f"commonpool array {array.id}",
                          cancel=f"commonpool cancel {array.id}")
    if wait:
        array = client.wait_array(array.id)
        if not as_json:
            render.console.print(f"ended: {render.array_line(array)}")
    if as_json:
        render.print_json(array)
    if wait and set(array.by_state) != {"SUCCEEDED"}:
        raise typer.Exit(EXIT_JOB_FAILED)


def jobs(
    state_filter: list[str] = typer.Option([], "--state", help="Only these states (repeat)."),
    owner: str | None = typer.Option(None, help="Only this owner's jobs."),
    project: str | None = typer.Option(None, help="Only this project's jobs."),
    array: str | None = typer.Option(None, "--array", help="Only the tasks of this job array."),
    limit: int = typer.Option(50, min=1, max=10_000, help="At most this many jobs."),
    as_json: bool = JsonOption,
) -> None:
    """List jobs, newest first."""
    with state.client() as client:
        page = client.list_jobs_page(
            states=tuple(s.upper() for s in state_filter),
            owner=owner,
            project=project,
            array=array,
            limit=limit,
        )
    if as_json:
        render.print_json(
            {
                "items": [j.model_dump(mode="json") for j in page.items],
                "next_cursor": page.next_cursor,
            }
        )
        return
    rows = [
        (
            j.id,
            j.name if j.array_index is None else f"{j.name}[{j.array_index}]",
            render.state(j.state),
            j.project,
            j.owner,
            f"{j.workers_min}"
            if j.workers_min == j.workers_max
            else f"{j.workers_min}-{j.workers_max}",
            render.age(j.submitted_at),
            j.pending_reason or j.exit_reason or "",
        )
        for j in page.items
    ]
    render.console.print(
        render.table(
            "jobs",
            ["ID", "NAME", "STATE", "PROJECT", "OWNER", "WORKERS", "SUBMITTED", "REASON"],
            rows,
        )
    )


def job(job_id: str = typer.Argument(..., help="Job id."), as_json: bool = JsonOption) -> None:
    """Show one job: spec, state, placement, energy and carbon, events and latest metrics."""
    with state.client() as client:
        info = client.get_job(job_id)
        events = client.job_events(job_id)
        allocations = client.job_allocations(job_id)
        energy = client.job_energy(job_id)
    if as_json:
        render.print_json(
            {
                "job": info.model_dump(mode="json"),
                "events": [e.model_dump(mode="json") for e in events],
                "allocations": [a.model_dump(mode="json") for a in allocations],
                "energy": energy.model_dump(mode="json", exclude={"series"}),
            }
        )
        return
    c = render.console
    c.print(f"[bold]{info.id}[/] {info.name}  {render.state(info.state)}  attempt {info.attempt}")
    c.print(
        f"  {escape(render.what_runs(info))}  workers {info.workers_min}-{info.workers_max}  "
        f"per worker {info.cpus_per_worker:g} cpus, {render.gib(info.memory_bytes_per_worker)},"
        f" {info.gpus_per_worker} gpus{' ' + info.gpu_type if info.gpu_type else ''}"
    )
    c.print(f"  project {info.project}  owner {info.owner}  priority {info.priority}")
    if info.job_type:
        c.print(f"  job type {escape(info.job_type)}")
    voluntary = [
        f"{count} {why}"
        for count, why in (
            (info.policy_preemptions, "by the policy"),
            (info.carbon_suspensions, "for cleaner power"),
            (info.regrows, "to regrow"),
        )
        if count
    ]
    if voluntary:
        c.print(f"  requeued {', '.join(voluntary)} (no attempt spent)")
    if info.pending_reason:
        c.print(f"  waiting: {info.pending_reason}")
    if info.exit_reason:
        c.print(f"  exit: {info.exit_reason}")
    if info.checkpoint_uri:
        c.print(f"  checkpoints: {escape(info.checkpoint_uri)}")
    if info.metrics:
        c.print(
            "  metrics: "
            + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in info.metrics.items()
            )
        )
    for label, text in render.energy_rows(energy):
        c.print(f"  {label}: {text}")
    if allocations:
        c.print(
            render.table(
                "allocations",
                ["ATTEMPT", "RANK", "NODE", "CPUS", "GPUS", "ACTIVE"],
                [
                    (
                        a.attempt,
                        a.rank,
                        a.node_id,
                        f"{a.cpus:g}",
                        a.gpus,
                        "yes" if a.released_at is None else "no",
                    )
                    for a in allocations
                ],
            )
        )
    c.print(
        render.table(
            "events",
            ["WHEN", "FROM", "TO", "BY", "WHY"],
            [
                (
                    e.created_at.strftime("%H:%M:%S"),
                    e.from_state or "-",
                    render.state(e.to_state),
                    e.actor,
                    e.reason or "",
                )
                for e in events
            ],
        )
    )


def logs(
    job_id: str = typer.Argument(..., help="Job id."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the job ends."),
    tail: int | None = typer.Option(None, min=1, help="Only the last N lines."),
) -> None:
    """Print a job's logs."""
    with state.client() as client:
        lines = client.follow_logs(job_id, tail=tail) if follow else client.logs(job_id, tail=tail)
        for line in lines:
            print(line.line, flush=True)


def cancel(
    job_id: str = typer.Argument(..., help="Job id, or a job array's id (arr_...)."),
    reason: str | None = typer.Option(None, help="Why (stored in the job's events)."),
    as_json: bool = JsonOption,
) -> None:
    """Cancel a job in any non-final state (an array: all its unfinished tasks); its
    allocations are released."""
    with state.client() as client:
        if job_id.startswith(ARRAY_PREFIX):
            array = client.cancel_array(job_id, reason)
            if as_json:
                render.print_json(array)
            else:
                render.console.print(render.array_line(array))
            return
        info = client.cancel_job(job_id, reason)
    if as_json:
        render.print_json(info)
    else:
        render.console.print(f"{info.id} {render.state(info.state)}")


def array(
    array_id: str = typer.Argument(..., help="Job array id (arr_...)."), as_json: bool = JsonOption
) -> None:
    """Show a job array: its tasks counted by state (list them: jobs --array ID)."""
    with state.client() as client:
        info = client.get_array(array_id)
    if as_json:
        render.print_json(info)
        return
    render.console.print(render.array_line(info))
    render.console.print(f"  project {info.project}  owner {info.owner}")
