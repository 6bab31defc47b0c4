"""No request leaves localhost: every script, style and call of every page is served by the pool."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from .conftest import PHONE, World, login, visit

pytestmark = [pytest.mark.ray, pytest.mark.slow]

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
IN_PAGE_SCHEMES = {"data", "blob", "about"}  # never fetched from anywhere


def test_no_request_leaves_localhost(context: Any, page: Any, world: World) -> None:
    urls: list[str] = []
    context.on("request", lambda request: urls.append(request.url))
    login(page, world.admin_token)
    routes = [
        ("#/pool", "Pool"),
        ("#/nodes", "Nodes"),
        ("#/jobs", "Jobs"),
        ("#/fairness", "Fairness"),
    ]
    for size in (None, PHONE):
        if size:
            page.set_viewport_size(size)
        for route, heading in routes:
            visit(page, route, heading)
        page.evaluate("id => { window.location.hash = `#/jobs/${id}`; }", world.digits.id)
        expect(page.locator("#chart-loss svg")).to_be_visible()
    page.wait_for_timeout(3500)  # a round of live updates too

    assert len(urls) > 20
    assert any(u.endswith("/dashboard/static/app.js") for u in urls)
    leaving = [
        u
        for u in urls
        if urlsplit(u).scheme not in IN_PAGE_SCHEMES and urlsplit(u).hostname not in LOCAL_HOSTS
    ]
    assert leaving == []


def test_the_page_forbids_other_origins(page: Any, world: World) -> None:
    """The Content-Security-Policy keeps scripts, styles and calls to this origin."""
    response = page.goto("/dashboard")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    scripts = page.evaluate("[...document.scripts].map(s => s.src)")
    styles = page.evaluate(
        "[...document.querySelectorAll('link[rel=stylesheet]')].map(l => l.href)"
    )
    assert all(u.startswith(world.url + "/dashboard/static/") for u in scripts + styles)
