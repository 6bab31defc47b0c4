"""The API's cache of Serve's status: one dashboard call per TTL for every caller.

A stand-in for Ray dashboard's `/api/serve/applications/` route runs as a real
HTTP server on loopback (the real dashboard is exercised by the serving
integration test); it counts the calls so the cache's effect is measurable.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from commonpool.api.serve_status import NOT_DEPLOYED, UNKNOWN, ApplicationStatus, ServeStatus

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
        body = json.dumps({"applications": APPLICATIONS}).encode()
        self.send_response(200 if self.path == "/api/serve/applications/" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dashboard() -> Iterator[str]:
    _Dashboard.calls = 0
    _Dashboard.authorization = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dashboard)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


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
