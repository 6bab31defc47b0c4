"""Carbon-intensity forecasts as the ``carbon`` policy reads them: pure step functions.

A forecast arrives in the snapshot as ``((t, g_per_kwh), ...)`` per region, ``t`` on the
snapshot's clock; each value holds until the next point and the last one until the horizon
(``t`` of the last point + the median step). Beyond the horizon nothing is known, so a window
that runs past it is charged the forecast's mean for the unknown part (neutral: it neither
attracts nor repels work).

The mean over ``[s, s + d)`` comes from a cumulative integral evaluated with ``numpy.interp``
(exact for a step function: the integral is piecewise linear), and ``values`` reads many
times in one vectorised call, so a cycle costs O(jobs x log points), not a Python loop over
the forecast per job.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Points = Sequence[tuple[float, float]]


class IntensityForecast:
    """One region's forecast: value at a time, mean over windows."""

    def __init__(self, points: Points) -> None:
        pts = sorted((float(t), float(v)) for t, v in points)
        if not pts:
            raise ValueError("a forecast needs at least one point")
        self.t = np.array([p[0] for p in pts])
        self.v = np.array([p[1] for p in pts])
        step = float(np.median(np.diff(self.t))) if len(pts) > 1 else 3600.0
        self.end = float(self.t[-1]) + step  # the horizon
        edges = np.append(self.t, self.end)
        self.cum = np.concatenate(([0.0], np.cumsum(self.v * np.diff(edges))))
        self.edges = edges
        self.mean_value = float(self.cum[-1] / (self.end - self.t[0]))

    def value_at(self, t: float) -> float:
        """The step covering ``t`` (first value before the start, mean after the horizon)."""
        if t >= self.end:
            return self.mean_value
        i = int(np.searchsorted(self.t, t, side="right")) - 1
        return float(self.v[max(i, 0)])

    def _integral(self, x: np.ndarray) -> np.ndarray:
        """Integral of the forecast from its first point to ``x`` (extended flat/mean)."""
        inside = np.interp(x, self.edges, self.cum)
        before = np.minimum(x - self.t[0], 0.0) * self.v[0]
        after = np.maximum(x - self.end, 0.0) * self.mean_value
        return inside + before + after

    def means(self, starts: np.ndarray, duration: float) -> np.ndarray:
        """Time-weighted mean intensity of windows ``[s, s + duration)`` for each start."""
        d = max(duration, 1.0)
        return (self._integral(starts + d) - self._integral(starts)) / d

    def values(self, times: np.ndarray) -> np.ndarray:
        """``value_at`` for many times (the mean beyond the horizon)."""
        i = np.maximum(np.searchsorted(self.t, times, side="right") - 1, 0)
        return np.where(times >= self.end, self.mean_value, self.v[i])

    @property
    def step(self) -> float:
        return float(np.median(np.diff(self.edges)))

    def mean(self, start: float, duration: float) -> float:
        return float(self.means(np.array([start]), duration)[0])
