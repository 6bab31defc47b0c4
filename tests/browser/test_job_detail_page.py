"""Job detail: events timeline, loss and throughput curves, per-node utilisation, energy, logs."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import DIGITS_EPOCHS, PHONE, World, shot, visit

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def open_digits(page: Any, world: World) -> None:
    visit(page, "#/jobs", "Jobs")
    page.get_by_role("link", name="digits-mlp").click()
    expect(page.locator(".crumbs")).to_contain_text("digits-mlp")
    expect(page.get_by_role("heading", level=1)).to_contain_text("SUCCEEDED")


def test_job_detail_shows_loss_curve_energy_nodes_events_and_logs(
    admin_page: Any, world: World
) -> None:
    page = admin_page
    open_digits(page, world)
    assert page.url.endswith(f"#/jobs/{world.digits.id}")
    loss = page.locator("#chart-loss")
    expect(loss.locator("path.series")).to_have_count(1)
    expect(loss.locator("circle")).to_have_count(DIGITS_EPOCHS)  # one point per epoch
    expect(loss.locator("desc")).to_contain_text(f"loss: {DIGITS_EPOCHS} points")
    expect(page.locator("#chart-throughput circle")).to_have_count(DIGITS_EPOCHS)

    energy = page.locator("#energy")
    heading = page.get_by_role("heading", name="Energy", exact=True)
    energy_card = energy.locator(".card", has=heading)
    expect(energy_card.locator(".big")).to_have_text(re.compile(r"^[\d.,]+ k?Wh$"))
    expect(energy_card.locator(".big")).not_to_have_text("0 Wh")
    expect(energy_card.locator(".flag-estimated")).to_contain_text("estimated (100 %)")
    expect(energy.locator(".card", has=page.get_by_role("heading", name="Carbon"))).to_contain_text(
        "g CO₂e/kWh"
    )
    expect(page.locator("#energy-method")).to_contain_text("no power counter")
    expect(page.locator("#energy-method")).to_contain_text("cpu=model")
    expect(page.locator("#chart-energy path.series")).to_have_count(1)

    nodes = page.get_by_role("table", name="Ranks, node utilisation and energy per node")
    expect(nodes.locator("tbody tr")).to_have_count(2)  # DDP over both agents
    for name in ("local-0", "local-1"):
        expect(nodes.get_by_role("row", name=re.compile(name))).to_contain_text("Wh")

    events = page.locator("#events li")
    expect(events.first).to_contain_text("QUEUED")
    expect(events.last).to_contain_text("SUCCEEDED")
    expect(page.locator("#events")).to_contain_text("RUNNING")
    expect(page.locator("#logs")).to_contain_text(re.compile("epoch|loss"))
    shot(page, "job-detail")


def test_pending_job_detail_says_why_pending(user_page: Any, world: World) -> None:
    page = user_page
    page.evaluate("id => { window.location.hash = `#/jobs/${id}`; }", world.pending.id)
    expect(page.locator("#pending-reason")).to_contain_text("no schedulable node matches labels")
    expect(page.get_by_role("button", name="Cancel job needs-a-site")).to_be_visible()
    shot(page, "job-detail-pending")


def test_job_detail_on_a_phone(admin_page: Any, world: World) -> None:
    page = admin_page
    page.set_viewport_size(PHONE)
    open_digits(page, world)
    expect(page.locator("#chart-loss svg")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "job-detail-phone")
