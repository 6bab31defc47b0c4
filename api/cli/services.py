"""`commonpool serve` and `commonpool service ...`: models served over HTTP on the pool."""

from __future__ import annotations

import typer

from commonpool.scheduler.spec import JobSpec, ServiceSpec

from . import render
from .context import JsonOption, state

service_app = typer.Typer(help="Served models: list, show figures, stop.", no_args_is_help=True)


def serve(
    model: str = typer.Argument(..., help="Model artifact NAME or NAME@VERSION to serve."),
    replicas: int = typer.Option(1, min=1, help="Replicas (each one allocation of the pool)."),
    cpus: float = typer.Option(1.0, help="CPUs per replica."),
    memory: str | None = typer.Option(None, help="Memory per replica, e.g. 2GiB."),
    gpus: int = typer.Option(0, min=0, help="GPUs per replica."),
    builder: str | None = typer.Option(
        None,
        help="module:function returning the nn.Module a checkpoint loads into "
        "(not for ONNX or TorchScript artifacts).",
    ),
    idle_timeout: int = typer.Option(
        600, min=0, help="Seconds without requests before replicas scale to zero (0: never)."
    ),
    max_batch: int = typer.Option(32, min=1, help="Requests a replica batches together."),
    name: str | None = typer.Option(None, help="Service name (default: from the model)."),
    project: str | None = typer.Option(None, help="Project charged (default: your only one)."),
    as_json: bool = JsonOption,
) -> None:
    """Serve a model artifact on pool nodes (a long-running job with its allocation)."""
    resources: dict[str, object] = {"cpus": cpus, "gpus": gpus}
    if memory:
        resources["memory_bytes"] = memory
    spec = JobSpec.model_validate({
        "name": name or f"serve-{model.partition('@')[0]}",
        "kind": "service",
        "service": ServiceSpec(
            model=model, builder=builder, idle_timeout_s=idle_timeout, max_batch_size=max_batch
        ),
        "workers": replicas,
        "resources": resources,
        "project": project,
    })  # fmt: skip
    with state.client() as client:
        job = client.submit_job(spec)
    if as_json:
        render.print_json(job)
        return
    render.console.print(f"service [bold]{job.id}[/] ({job.name}) {render.state(job.state)}")
    render.next_steps(
        status=f"commonpool service show {job.id}",
        predict=f"POST /api/v1/services/{job.id}/predict " + '{"inputs": [[...], ...]}',
        stop=f"commonpool service stop {job.id}",
    )


@service_app.command("list")
def list_services(as_json: bool = JsonOption) -> None:
    """Services you may see, newest first (stopped ones too)."""
    with state.client() as client:
        items = list(client.list_jobs_page(kind="service", limit=200).items)
    if as_json:
        render.print_json(items)
        return
    rows = [
        (j.id, j.name, render.state(j.state), j.workers_max, j.project,
         f"{j.metrics.get('requests', 0):.0f}", render.age(j.submitted_at))
        for j in items
    ]  # fmt: skip
    render.console.print(render.table(
        "services", ["ID", "NAME", "STATE", "REPLICAS", "PROJECT", "REQUESTS", "AGE"], rows
    ))  # fmt: skip


def _maybe(value: float | None, unit: str, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f} {unit}"


@service_app.command("show")
def show(
    job_id: str = typer.Argument(..., help="The service's job id."), as_json: bool = JsonOption
) -> None:
    """A service's model, route, request figures and energy per 1,000 requests."""
    with state.client() as client:
        service = client.get_service(job_id)
    if as_json:
        render.print_json(service)
        return
    rows = [
        ("service", f"{service.job.id} ({service.job.name}) {render.state(service.job.state)}"),
        ("model", service.model or "-"),
        ("replicas", f"{service.replicas} allocated, "
                     f"{'?' if service.replicas_running is None else service.replicas_running} "
                     f"running ({service.serve_status or 'status unknown'})"),
        ("route", f"POST {service.route}"),
        ("requests", f"{service.requests} ({service.errors} failed), "
                     f"{service.requests_per_s:.1f}/s now"),
        ("latency p50 / p99", f"{_maybe(service.latency_p50_ms, 'ms')} / "
                              f"{_maybe(service.latency_p99_ms, 'ms')}"),
        ("energy", f"{service.energy_kwh:.6f} kWh, {service.co2e_g:.3f} gCO2e"),
        ("per 1,000 requests", f"{_maybe(service.kwh_per_1000_requests, 'kWh', 6)}, "
                               f"{_maybe(service.co2e_g_per_1000_requests, 'gCO2e', 3)}"),
    ]  # fmt: skip
    render.console.print(render.table("service", ["FIELD", "VALUE"], rows))


@service_app.command("stop")
def stop(
    job_id: str = typer.Argument(..., help="The service's job id."), as_json: bool = JsonOption
) -> None:
    """Stop a service: its replicas end and its allocation is released."""
    with state.client() as client:
        job = client.cancel_job(job_id, "service stopped")
    render.print_json(job) if as_json else render.console.print(
        f"{job.id} {render.state(job.state)}"
    )
