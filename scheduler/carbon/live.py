"""Optional live intensity from an Electricity Maps-style HTTP API (v3 paths, `auth-token` header).

    GET {base}/carbon-intensity/latest?zone=DE   -> {"carbonIntensity": 302, "datetime": ...}
    GET {base}/carbon-intensity/history?zone=DE  -> {"history":  [{"carbonIntensity", "datetime"}]}
    GET {base}/carbon-intensity/forecast?zone=DE -> {"forecast": [{"carbonIntensity", "datetime"}]}

Never required: every network, HTTP or parse failure becomes
`IntensityUnavailable`, so the fallback chain moves on. Responses are
cached per (endpoint, zone) for `ttl_s` to respect API quotas.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from commonpool.scheduler.carbon.reading import (
    IntensityPoint,
    IntensityReading,
    IntensitySeries,
    IntensityUnavailable,
    as_utc,
    normalize_region,
)


class LiveIntensityProvider:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        client: httpx.Client | None = None,
        ttl_s: float = 300.0,
        timeout_s: float = 2.0,
        latest_window: timedelta = timedelta(hours=1),
        clock: Callable[[], float] = time.time,
    ) -> None:
        headers = {"auth-token": api_key} if api_key else {}
        self._client = client or httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout_s
        )
        self._ttl_s = ttl_s
        self._latest_window = latest_window
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    def _get(self, endpoint: str, zone: str) -> Any:
        key = (endpoint, zone)
        cached = self._cache.get(key)
        if cached is not None and self._clock() - cached[0] < self._ttl_s:
            return cached[1]
        try:
            response = self._client.get(f"carbon-intensity/{endpoint}", params={"zone": zone})
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise IntensityUnavailable(f"live {endpoint} for {zone}: {exc}") from exc
        self._cache[key] = (self._clock(), body)
        return body

    def _points(self, endpoint: str, zone: str) -> list[IntensityPoint]:
        try:
            rows = self._get(endpoint, zone)[endpoint]
            points = [
                IntensityPoint(
                    as_utc(datetime.fromisoformat(r["datetime"])), float(r["carbonIntensity"])
                )
                for r in rows
                if r.get("carbonIntensity") is not None
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise IntensityUnavailable(f"live {endpoint} for {zone}: bad payload") from exc
        return sorted(points, key=lambda p: p.at)

    def intensity(self, region: str, at: datetime) -> IntensityReading:
        zone, at = normalize_region(region), as_utc(at)
        now = datetime.fromtimestamp(self._clock(), at.tzinfo)
        if abs(now - at) <= self._latest_window:
            body = self._get("latest", zone)
            try:
                return IntensityReading(float(body["carbonIntensity"]), f"live:{zone} latest")
            except (KeyError, TypeError, ValueError) as exc:
                raise IntensityUnavailable(f"live latest for {zone}: bad payload") from exc
        series = self.series(zone, at, at)
        return IntensityReading(series.value_at(at), series.source)

    def series(self, region: str, start: datetime, end: datetime) -> IntensitySeries:
        """History (past 24 h) and forecast points covering [start, end], if the API has them."""
        zone, start, end = normalize_region(region), as_utc(start), as_utc(end)
        points: list[IntensityPoint] = []
        for endpoint in ("history", "forecast"):
            try:
                points += self._points(endpoint, zone)
            except IntensityUnavailable:
                continue
        covering = [p for p in points if p.at <= start]
        if not covering:
            raise IntensityUnavailable(f"live data for {zone} does not reach back to {start}")
        inside = [p for p in points if start < p.at < end]
        last = max(covering, key=lambda p: p.at)
        return IntensitySeries((last, *inside), f"live:{zone} history/forecast")
