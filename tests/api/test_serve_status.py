"""The API's cache of Serve's status: one dashboard call per TTL for every caller.

A stand-in for Ray dashboard's `/api/serve/applications/` route runs as a real
HTTP server on loopback (the real dashboard is exercised by the serving
integration test); it counts the calls so the cache's effect is measurable.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

import pytest

from commonpool.api.serve_status import NOT_DEPLOYED, UNKNOWN, ApplicationStatus, ServeStatus
from tests.loopback import reply_json, serving

APPLICATIONS = {
    "job-a": {
        "status": "RUNNING",
        "deployments": {
            "Model": {
                "replicas": [{"state": "RUNNING"}, {"state": "STARTING"}, {"state": "RUNNING"}]
            }
        },
    }
}


class _Dashboard(BaseHTTPRequestHandler):
    calls = 0
    authorization: list[str | None] = []

    def do_GET(self) -> None:
        type(self).calls += 1
        type(self).authorization.append(self.headers.get("Authorization"))
        found = self.path == "/api/serve/applications/"
        reply_json(self, {"applications": APPLICATIONS}, 200 if found else 404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dashboard() -> Iterator[str]:
    _Dashboard.calls = 0
    _Dashboard.authorization = []
    with serving(_Dashboard) as url:
        yield url


def test_counts_running_replicas_and_names_missing_applications(dashboard: str) -> None:
    serve = ServeStatus(dashboard, token="secret")
    assert serve.of("job-a") == ApplicationStatus("RUNNING", 2)
    assert serve.of("job-b") == NOT_DEPLOYED
    assert _Dashboard.authorization == ["Bearer secret"]


def test_one_dashboard_call_answers_every_caller_within_the_ttl(dashboard: str) -> None:
    serve = ServeStatus(dashboard, ttl_s=60.0)
    with ThreadPoolExecutor(8) as callers:
        answers = list(callers.map(lambda _: serve.of("job-a"), range(32)))
    assert set(answers) == {ApplicationStatus("RUNNING", 2)}
    assert _Dashboard.calls == 1 == serve.fetches


def test_asks_again_once_the_ttl_has_passed(dashboard: str) -> None:
    serve = ServeStatus(dashboard, ttl_s=0.0)
    serve.of("job-a")
    serve.of("job-a")
    assert _Dashboard.calls == 2


def test_without_a_dashboard_or_an_answer_the_status_is_unknown(dashboard: str) -> None:
    assert ServeStatus(None).of("job-a") == UNKNOWN
    closed = ServeStatus("http://127.0.0.1:9/", timeout_s=0.5)  # discard port: refused
    assert closed.of("job-a") == UNKNOWN
    assert ServeStatus(dashboard + "missing").of("job-a") == UNKNOWN
