"""/api/v1/services: inference through the pool's API, and a service's figures.

A service is a job (kind `service`) whose replicas Ray Serve runs on its
allocated nodes. Clients never talk to Serve's port (internal to the pool,
like Ray's other ports): they call `predict` here with their token, the
project rule of jobs decides who may, and the API forwards the typed body
to the service's Serve route and measures the request.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from commonpool.scheduler.domain.errors import Conflict, Invalid, Unavailable
from commonpool.scheduler.domain.states import JobState
from commonpool.scheduler.services import jobs as jobs_svc
from commonpool.scheduler.services.artifacts import job_inputs
from commonpool.scheduler.services.energy_report import job_energy

from ..authz import JOB_READ, authorize
from ..deps import get_db
from ..schemas import JobRead, PredictRequest, PredictResponse, ServiceRead

router = APIRouter(prefix="/services", tags=["services"])

READY_CACHE_S = 1.0  # a RUNNING service is rechecked in the registry at most this often


@router.post(
    "/{job_id}/predict", response_model=PredictResponse, dependencies=[authorize(JOB_READ)]
)
async def predict(job_id: str, body: PredictRequest, request: Request) -> Any:
    """The service's model on `inputs` (rows batched with other callers' by its replicas)."""
    await _require_serving(request, job_id)
    serve: httpx.AsyncClient | None = request.app.state.serve_http
    if serve is None:
        raise Unavailable("this pool has no Ray Serve address (setting ray_serve_url)")
    started = time.perf_counter()
    try:
        answer = await serve.post(
            f"/{job_id}", content=body.model_dump_json(),
            headers={"Content-Type": "application/json"},
        )
    except httpx.TransportError as exc:
        _record(request, job_id, started, len(body.inputs), ok=False)
        raise Unavailable(f"service {job_id} did not answer: {exc}") from exc
    ok = answer.status_code == 200
    due = _record(request, job_id, started, len(body.inputs), ok=ok)
    if due:
        await run_in_threadpool(_write_figures, request, job_id)
    if answer.status_code == 422:
        raise Invalid(f"the model refused the inputs: {answer.text[:500]}")
    if not ok:
        raise Unavailable(f"service {job_id} answered {answer.status_code}: {answer.text[:500]}")
    return Response(content=answer.content, media_type="application/json")


def _record(request: Request, job_id: str, started: float, rows: int, *, ok: bool) -> bool:
    return request.app.state.service_stats.record(
        job_id, time.perf_counter() - started, rows, ok
    )


def _write_figures(request: Request, job_id: str) -> None:
    stats = request.app.state.service_stats
    with get_db(request).unit_of_work() as session:
        jobs_svc.record_metrics(
            session, job_id, step=stats.report_step(job_id),
            values=stats.figures(job_id).as_metrics(),
        )


async def _require_serving(request: Request, job_id: str) -> None:
    ready: dict[str, float] = request.app.state.services_ready
    if ready.get(job_id, 0.0) > time.monotonic():
        return

    def check() -> None:
        with get_db(request).unit_of_work(write=False) as session:
            job = jobs_svc.get_job(session, job_id)
            if job.kind != "service":
                raise Invalid(f"job {job_id} is a {job.kind} job, not a service")
            if job.state != JobState.RUNNING.value:
                raise Conflict(
                    f"service {job_id} is {job.state}, not serving"
                    + (": it starts serving once RUNNING" if not JobState(job.state).terminal
                       else ""),
                    state=job.state,
                )

    await run_in_threadpool(check)
    ready[job_id] = time.monotonic() + READY_CACHE_S


@router.get("/{job_id}", response_model=ServiceRead, dependencies=[authorize(JOB_READ)])
def get_service(job_id: str, request: Request) -> ServiceRead:
    """The service's job, model, replicas and request figures, with energy per 1,000 requests
    (the job's metered energy over the requests served so far). Serve's status is asked
    after the registry read, outside its session (`serve_status`)."""
    with get_db(request).unit_of_work(write=False) as session:
        job = jobs_svc.get_job(session, job_id)
        if job.kind != "service":
            raise Invalid(f"job {job_id} is a {job.kind} job, not a service")
        job_read = JobRead.model_validate(job)
        energy = job_energy(session, job_id)
        model = next((f"{a.name}@{a.version}" for a, _ in job_inputs(session, job_id)), None)
    figures = request.app.state.service_stats.figures(job_id)
    requests = figures.requests or int((job_read.metrics or {}).get("requests", 0))
    per_thousand = 1000 / requests if requests else None
    serve = request.app.state.serve_status.of(job_id)
    return ServiceRead(
        serve_status=serve.status,
        replicas_running=serve.replicas_running,
        job=job_read,
        model=model,
        route=f"/api/v1/services/{job_id}/predict",
        replicas=job_read.workers_max,
        requests=requests,
        errors=figures.errors,
        requests_per_s=figures.requests_per_s,
        latency_p50_ms=figures.latency_p50_ms,
        latency_p99_ms=figures.latency_p99_ms,
        energy_kwh=energy.kwh,
        co2e_g=energy.co2e_g,
        kwh_per_1000_requests=energy.kwh * per_thousand if per_thousand else None,
        co2e_g_per_1000_requests=energy.co2e_g * per_thousand if per_thousand else None,
    )
