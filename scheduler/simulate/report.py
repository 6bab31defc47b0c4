"""Metrics of a simulation run, its JSON form, and a self-contained HTML/SVG plot page.

Finish-time fairness (Themis' rho) compares a job's JCT with the time it would take on an
equal 1/N share of the pool, N being the average number of jobs active during its life:
rho <= 1 means the job did at least as well as under a static equal split. Jain's index is
taken over the projects' mean 1/rho (1.0 = all projects equally well served).
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from .engine import SimResult, Simulator

HOUR = 3600.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no numpy needed for a few thousand values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def jain(values: list[float]) -> float:
    if not values or not any(values):
        return 1.0
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def rho_of(sim: Simulator, result: SimResult) -> dict[int, float]:
    """Per-job finish-time fairness (JCT / time on an equal share)."""
    capacity = {t: 0 for t in sim.types}
    for n in sim.nodes.values():
        if n.gpu_type:
            capacity[n.gpu_type] += n.total.gpus
    total_gpus = sum(capacity.values())
    out = {}
    for j in result.jobs:
        if j.finish is None:
            continue
        t = j.trace
        jct = j.finish - t.arrival_s
        runnable = {g: sim.rate(t, g) for g in sim.types if sim.rate(t, g) > 0}
        weight = sum(capacity[g] for g in runnable)
        avg_rate = sum(r * capacity[g] for g, r in runnable.items()) / max(weight, 1)
        before, after = result.contention_integral[t.index]
        n_avg = max(1.0, (after - before) / jct) if jct > 0 else 1.0
        share = min(1.0, total_gpus / (n_avg * t.gpus))
        ideal = t.total_steps / (avg_rate * share) if avg_rate > 0 else jct
        out[t.index] = jct / ideal if ideal > 0 else 1.0
    return out


def summarize(sim: Simulator, result: SimResult, **meta: Any) -> dict[str, Any]:
    """The numbers the issue asks for, in hours where a duration."""
    done = [j for j in result.jobs if j.finish is not None]
    jct = [(j.finish - j.trace.arrival_s) / HOUR for j in done]  # type: ignore[operator]
    wait = [(j.first_start - j.trace.arrival_s) / HOUR for j in done]  # type: ignore[operator]
    rho = rho_of(sim, result)
    per_project: dict[str, list[float]] = defaultdict(list)
    for j in done:
        per_project[j.project].append(rho[j.trace.index])
    busy = online = 0.0
    for a, b in zip(result.samples, result.samples[1:], strict=False):
        busy += a.busy_gpus * (b.t - a.t)
        online += a.online_gpus * (b.t - a.t)
    first = min((j.trace.arrival_s for j in result.jobs), default=0.0)
    last = max((j.finish or 0.0 for j in done), default=0.0)
    carbon = carbon_summary(sim, result, last) if sim.carbon is not None else {}
    return {
        **meta,
        "jobs": len(result.jobs),
        "completed": len(done),
        "avg_jct_h": sum(jct) / len(jct) if jct else 0.0,
        "p95_jct_h": percentile(jct, 95),
        "makespan_h": (last - first) / HOUR,
        "avg_queueing_delay_h": sum(wait) / len(wait) if wait else 0.0,
        "utilization": busy / online if online else 0.0,
        "rho_avg": sum(rho.values()) / len(rho) if rho else 0.0,
        "rho_max": max(rho.values(), default=0.0),
        "jain_projects": jain([len(v) / sum(v) for v in per_project.values()]),
        "preemptions": result.preemptions,
        "churn_preemptions": result.churn_preemptions,
        "work_lost_gpu_h": result.lost_gpu_s / HOUR,
        "plans": result.plans,
        "jct_h": sorted(jct),
        "utilization_series": [
            [round(s.t / HOUR, 3), s.busy_gpus, s.online_gpus] for s in result.samples
        ],
        **carbon,
    }


def _avg(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def carbon_summary(sim: Simulator, result: SimResult, end: float) -> dict[str, Any]:
    """gCO2e (kg), energy, JCT split flexible/inflexible, deadline misses, plot series."""
    assert sim.carbon is not None
    done = [j for j in result.jobs if j.finish is not None]
    flex = [j for j in done if j.flexible]
    rigid = [j for j in done if not j.flexible]

    def jct(jobs: list) -> float:
        return _avg([(j.finish - j.trace.arrival_s) / HOUR for j in jobs])

    def kg(jobs: list) -> float:
        return sum(j.co2e_g for j in jobs) / 1000.0

    def kwh(jobs: list) -> float:
        return sum(j.energy_kwh for j in jobs)

    regions = sorted(sim.carbon.series)
    step = max(HOUR, end / 2000)  # at most ~2,000 points per line
    times = [k * step for k in range(int(end // step) + 2)]
    load: dict[str, list[list[float]]] = {r: [] for r in regions}
    for smp in result.samples:
        for r in regions:
            load[r].append([round(smp.t / HOUR, 3), smp.busy_by_region.get(r, 0)])
    return {
        "co2e_kg": kg(result.jobs),
        "energy_kwh": kwh(result.jobs),
        "g_per_kwh": 1000 * kg(result.jobs) / max(kwh(result.jobs), 1e-9),
        "flexible_jobs": len([j for j in result.jobs if j.flexible]),
        "flexible_co2e_kg": kg(flex),
        "flexible_g_per_kwh": 1000 * kg(flex) / max(kwh(flex), 1e-9),
        "inflexible_co2e_kg": kg(rigid),
        "avg_jct_flexible_h": jct(flex),
        "avg_jct_inflexible_h": jct(rigid),
        "deadline_misses": sum(1 for j in flex if j.finish > (j.deadline or math.inf)),
        "missed_deadline_jobs": sorted(j.trace.index for j in flex
                                       if j.finish > (j.deadline or math.inf)),
        "carbon_suspensions": result.carbon_suspensions,
        "intensity_series": {
            r: [[round(t / HOUR, 3), round(sim.carbon.series[r].value_at(t), 1)] for t in times]
            for r in regions
        },
        "load_series": load,
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=1) + "\n")


def _polyline(points: list[tuple[float, float]], w: int, h: int, color: str) -> str:
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs) or 1.0, min(0.0, min(ys)), max(ys) or 1.0
    sx = (w - 60) / ((x1 - x0) or 1.0)
    sy = (h - 40) / ((y1 - y0) or 1.0)
    pts = " ".join(f"{50 + (x - x0) * sx:.1f},{h - 25 - (y - y0) * sy:.1f}" for x, y in points)
    return (f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>'
            f'<text x="50" y="12" font-size="11">max {y1:.3g}</text>'
            f'<text x="{w - 80}" y="{h - 8}" font-size="11">{x1:.4g}</text>')


def svg_chart(title: str, points: list[tuple[float, float]], xlabel: str, w: int = 640,
              h: int = 280) -> str:
    """A minimal line chart as inline SVG (no plotting library needed)."""
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">'
            f'<rect x="50" y="15" width="{w - 60}" height="{h - 40}" fill="none" stroke="#999"/>'
            f'{_polyline(points, w, h, "#1f77b4")}'
            f'<text x="{w // 2}" y="{h - 8}" font-size="11">{html.escape(xlabel)}</text>'
            f'</svg></figure>')


COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd")


def svg_lines(title: str, lines: dict[str, list[tuple[float, float]]], xlabel: str,
              w: int = 900, h: int = 260) -> str:
    """Several named lines on shared axes as inline SVG, with a legend."""
    pts = [p for line in lines.values() for p in line]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts) or 1.0
    y1 = max(p[1] for p in pts) or 1.0
    sx, sy = (w - 60) / ((x1 - x0) or 1.0), (h - 40) / y1
    body = []
    for k, (name, line) in enumerate(sorted(lines.items())):
        color = COLORS[k % len(COLORS)]
        xy = " ".join(f"{50 + (x - x0) * sx:.1f},{h - 25 - y * sy:.1f}" for x, y in line)
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="1" points="{xy}"/>'
                    f'<text x="{60 + 70 * k}" y="28" font-size="11" fill="{color}">'
                    f'{html.escape(name)}</text>')
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">'
            f'<rect x="50" y="15" width="{w - 60}" height="{h - 40}" fill="none" stroke="#999"/>'
            f'{"".join(body)}<text x="50" y="12" font-size="11">max {y1:.3g}</text>'
            f'<text x="{w - 80}" y="{h - 8}" font-size="11">{x1:.4g}</text>'
            f'<text x="{w // 2}" y="{h - 8}" font-size="11">{html.escape(xlabel)}</text>'
            f'</svg></figure>')


def carbon_html(report: dict[str, Any]) -> str:
    """Intensity per region above busy GPUs per region, on the same time axis."""
    if "intensity_series" not in report:
        return ""
    end = max((t for line in report["load_series"].values() for t, _ in line), default=0.0)
    intensity = {r: [(t, v) for t, v in line if t <= end]
                 for r, line in report["intensity_series"].items()}
    load = {r: [(t, float(v)) for t, v in line] for r, line in report["load_series"].items()}
    return (svg_lines("Carbon intensity by region (gCO2e/kWh)", intensity, "time (h)")
            + svg_lines("Busy GPUs by region (load)", load, "time (h)"))


def write_html(report: dict[str, Any], path: Path) -> None:
    """JCT CDF and utilization over time, plus the summary numbers, in one file."""
    jct = report["jct_h"]
    cdf = [(x, (i + 1) / len(jct)) for i, x in enumerate(jct)]
    util = [(t, busy / online if online else 0.0)
            for t, busy, online in report["utilization_series"]]
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>" if isinstance(v, float)
        else f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in report.items() if not isinstance(v, list | dict)
    )
    path.write_text(
        "<!doctype html><meta charset='utf-8'><title>commonpool simulation</title>"
        f"<h1>{html.escape(str(report.get('policy', '')))} on "
        f"{html.escape(str(report.get('trace', '')))}</h1><table>{rows}</table>"
        + svg_chart("JCT CDF", cdf, "job completion time (h)")
        + svg_chart("GPU utilization", util, "time (h)")
        + carbon_html(report)
    )
