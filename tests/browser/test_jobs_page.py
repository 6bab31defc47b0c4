"""The Jobs page: a filterable, keyboard-navigable table with state badges, why-pending, cancel."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from commonpool.api.client.sdk import Client

from .conftest import PHONE, World, shot, visit

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def jobs_table(page: Any) -> Any:
    return page.get_by_role("table", name="Jobs, newest first")


def row_of(page: Any, job_id: str) -> Any:
    return jobs_table(page).locator(f"tr[data-row='{job_id}']")


def test_jobs_table_shows_states_and_why_pending(admin_page: Any, world: World) -> None:
    page = admin_page
    visit(page, "#/jobs", "Jobs")
    expect(row_of(page, world.digits.id).locator(".badge")).to_have_text("SUCCEEDED")
    expect(row_of(page, world.pending.id).locator(".badge")).to_have_text("QUEUED")
    expect(row_of(page, world.pending.id)).to_contain_text("no schedulable node matches labels")
    # every state is text and a shape, not colour alone
    for badge in jobs_table(page).locator(".badge").all():
        assert badge.locator("svg.icon").count() == 1 and badge.inner_text().isupper()
    shot(page, "jobs")


def test_jobs_filter_by_state_and_name(admin_page: Any, world: World) -> None:
    page = admin_page
    visit(page, "#/jobs?state=QUEUED", "Jobs")
    expect(page.get_by_label("State")).to_have_value("QUEUED")
    expect(jobs_table(page).locator("tbody tr")).to_have_count(1)
    expect(row_of(page, world.pending.id)).to_be_visible()
    page.get_by_label("State").select_option("SUCCEEDED")
    expect(row_of(page, world.digits.id)).to_be_visible()
    expect(jobs_table(page).locator("tbody tr")).to_have_count(1)
    assert "state=SUCCEEDED" in page.url  # a filtered view is a link
    page.get_by_label("State").select_option("")
    page.get_by_label("Name").fill("digits")
    expect(jobs_table(page).locator("tbody tr")).to_have_count(1)
    shot(page, "jobs-filtered")


def test_jobs_table_is_keyboard_navigable(admin_page: Any, world: World) -> None:
    page = admin_page
    visit(page, "#/jobs", "Jobs")
    links = jobs_table(page).locator("tbody tr th a")
    expect(links).to_have_count(3)
    links.first.focus()
    first = page.evaluate("document.activeElement.textContent")
    page.keyboard.press("ArrowDown")
    second = page.evaluate("document.activeElement.textContent")
    assert second != first and page.evaluate("document.activeElement.tagName") == "A"
    page.keyboard.press("End")
    page.keyboard.press("Home")
    assert page.evaluate("document.activeElement.textContent") == first
    # focus survives the live refresh of the table
    page.wait_for_timeout(3500)
    assert page.evaluate("document.activeElement.textContent") == first
    page.keyboard.press("Enter")
    expect(page.locator(".crumbs")).to_contain_text(first)


def test_admin_cancels_a_running_job_and_sees_it_cancelled(admin_page: Any, world: World) -> None:
    page = admin_page
    visit(page, "#/jobs", "Jobs")
    row = row_of(page, world.sleeper.id)
    expect(row.locator(".badge")).to_have_text(re.compile("RUNNING|STARTING"))
    finished = row_of(page, world.digits.id)
    expect(finished.get_by_role("button", name=re.compile("Cancel"))).to_have_count(0)
    row.get_by_role("button", name="Cancel job sleeper").click()
    dialog = page.get_by_role("dialog", name="Cancel job sleeper?")
    dialog.get_by_label(re.compile("Reason")).fill("cancelled from the dashboard test")
    dialog.get_by_role("button", name="Cancel job").click()
    expect(row.locator(".badge")).to_have_text("CANCELLED")
    expect(row).to_contain_text("cancelled from the dashboard test")
    expect(row.get_by_role("button", name=re.compile("Cancel"))).to_have_count(0)
    with Client(world.url, token=world.admin_token) as admin:
        job = admin.get_job(world.sleeper.id)
        events = admin.job_events(world.sleeper.id)
    assert job.state == "CANCELLED"
    assert events[-1].actor == "admin" and events[-1].reason == "cancelled from the dashboard test"
    shot(page, "jobs-after-cancel")


def test_member_may_cancel_only_own_jobs(user_page: Any, world: World) -> None:
    page = user_page
    visit(page, "#/jobs", "Jobs")
    expect(row_of(page, world.digits.id)).to_be_visible()  # same project: visible
    own = row_of(page, world.pending.id)
    expect(own.get_by_role("button", name="Cancel job needs-a-site")).to_be_visible()
    others = page.get_by_role("button", name=re.compile("Cancel job (sleeper|digits)"))
    expect(others).to_have_count(0)


def test_jobs_page_on_a_phone(admin_page: Any) -> None:
    page = admin_page
    page.set_viewport_size(PHONE)
    visit(page, "#/jobs", "Jobs")
    expect(jobs_table(page)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "jobs-phone")
