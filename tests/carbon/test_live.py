"""The live provider against a real HTTP server on 127.0.0.1 (no mocks of httpx)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

import pytest

from commonpool.scheduler.carbon import (
    FallbackChain,
    IntensityUnavailable,
    LiveIntensityProvider,
    YearlyAverageProvider,
    default_chain,
)
from tests.loopback import reply_json, serving

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


PAYLOADS = {
    "latest": {"zone": "DE", "carbonIntensity": 302, "datetime": iso(NOW)},
    "history": {
        "zone": "DE",
        "history": [
            {"carbonIntensity": 250, "datetime": iso(NOW - timedelta(hours=3))},
            {"carbonIntensity": 270, "datetime": iso(NOW - timedelta(hours=2))},
            {"carbonIntensity": None, "datetime": iso(NOW - timedelta(hours=1))},
        ],
    },
    "forecast": {"zone": "DE", "forecast": [{"carbonIntensity": 310, "datetime": iso(NOW)}]},
}


class FakeIntensityApi(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, str | None]] = []

    def do_GET(self) -> None:
        url = urlparse(self.path)
        endpoint = url.path.rsplit("/", 1)[-1]
        zone = parse_qs(url.query)["zone"][0]
        FakeIntensityApi.requests.append((endpoint, zone, self.headers.get("auth-token")))
        if zone != "DE" or endpoint not in PAYLOADS:
            self.send_error(500 if zone == "BROKEN" else 404)
            return
        reply_json(self, PAYLOADS[endpoint])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    FakeIntensityApi.requests = []
    with serving(FakeIntensityApi, "/v3/") as url:
        yield url


class Clock:
    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        return self.now


def test_latest_with_key_and_cache(api: str) -> None:
    clock = Clock()
    live = LiveIntensityProvider(api, "secret", ttl_s=60, clock=clock)
    reading = live.intensity("de", NOW)
    assert (reading.g_per_kwh, reading.source) == (302, "live:DE latest")
    assert not reading.is_fallback
    live.intensity("DE", NOW + timedelta(minutes=5))
    assert FakeIntensityApi.requests == [("latest", "DE", "secret")]
    clock.now += 61
    live.intensity("DE", NOW)
    assert len(FakeIntensityApi.requests) == 2


def test_past_time_uses_history_step(api: str) -> None:
    live = LiveIntensityProvider(api, "k", clock=Clock())
    reading = live.intensity("DE", NOW - timedelta(hours=2, minutes=30))
    assert reading.g_per_kwh == 250 and reading.source == "live:DE history/forecast"
    series = live.series("DE", NOW - timedelta(hours=3), NOW + timedelta(hours=1))
    assert [p.g_per_kwh for p in series.points] == [250, 270, 310]
    with pytest.raises(IntensityUnavailable):
        live.intensity("DE", NOW - timedelta(days=2))


def test_errors_fall_through_the_chain(api: str) -> None:
    yearly = YearlyAverageProvider()
    live = LiveIntensityProvider(api, clock=Clock())
    chain = FallbackChain([live, yearly], yearly.world_average())
    assert chain.intensity("BROKEN", NOW).is_fallback  # HTTP 500, then unknown to the table
    assert chain.intensity("FR", NOW).source.startswith("yearly:FR")
    assert ("latest", "FR", None) in FakeIntensityApi.requests


def test_unreachable_server_is_not_required() -> None:
    live = LiveIntensityProvider("http://127.0.0.1:9/v3/", "k", timeout_s=0.5, clock=Clock())
    with pytest.raises(IntensityUnavailable):
        live.intensity("DE", NOW)
    chain = default_chain(live=live)
    assert chain.intensity("DE", NOW).source == "csv:de_2020_ci.csv replayed from 2020"
