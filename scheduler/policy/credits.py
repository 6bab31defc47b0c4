"""Donor credits: projects that lend machines earn a larger share, with decay.

The caller (live loop or simulator) accumulates credits over time with :func:`accrue` from
what each donor's nodes delivered; the ``fair`` policy turns them into weights with
:func:`effective_weights`. Decay keeps a donation from years ago from buying priority today.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

GPU_HOUR_S = 3600.0


def accrue(
    credits: Mapping[str, float],
    delivered_gpu_s: Mapping[str, float],
    dt_s: float,
    half_life_s: float = 7 * 24 * 3600.0,
) -> dict[str, float]:
    """Decay old credits over ``dt_s`` and add the GPU-hours delivered in that interval.

    CPU work can be folded in by the caller as GPU-equivalent seconds.
    """
    factor = 0.5 ** (dt_s / half_life_s) if half_life_s > 0 else 0.0
    out = {p: c * factor for p, c in credits.items()}
    for project, gpu_s in delivered_gpu_s.items():
        out[project] = out.get(project, 0.0) + gpu_s / GPU_HOUR_S
    return out


def effective_weights(
    projects: Iterable[str],
    base_weights: Mapping[str, float],
    credits: Mapping[str, float],
    credit_weight: float = 1.0,
) -> dict[str, float]:
    """Base weight plus a bonus in proportion to the project's part of all credits.

    The bonuses add up to ``credit_weight`` x the sum of the base weights, so donors as a
    group can at most (credit_weight=1) double their say, and a lone donor cannot starve
    everyone else.
    """
    names = sorted(set(projects))
    base = {p: max(0.0, base_weights.get(p, 1.0)) for p in names}
    total_credit = sum(max(0.0, c) for c in credits.values())
    if total_credit <= 0 or credit_weight <= 0:
        return base
    pool = credit_weight * sum(base.values())
    return {p: base[p] + pool * max(0.0, credits.get(p, 0.0)) / total_credit for p in names}
