"""Signing in with an API token: kept in session storage, never in a URL; a bad one is refused."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import World, login, shot

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_login_with_a_token_shows_the_pool_and_keeps_the_token_out_of_urls(
    page: Any, world: World
) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto("/dashboard")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("navigation", name="Dashboard pages")).to_be_hidden()
    shot(page, "login")

    login(page, world.admin_token)

    expect(page.locator("#who")).to_have_text("admin (admin)")
    assert page.evaluate("sessionStorage.getItem('commonpool.token')") == world.admin_token
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    assert world.admin_token not in page.url
    assert requests and not [url for url in requests if world.admin_token in url]
    assert page.get_by_label("API token").input_value() == ""


def test_a_refused_token_stays_on_the_sign_in_form(page: Any) -> None:
    page.goto("/dashboard")
    page.get_by_label("API token").fill("cpu_not-a-real-token-at-all")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("refused")
    expect(page.get_by_role("navigation", name="Dashboard pages")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('commonpool.token')") is None


def test_log_out_forgets_the_token(page: Any, world: World) -> None:
    login(page, world.user_token)
    expect(page.locator("#who")).to_have_text(world.user)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('commonpool.token')") is None
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
