"""The Pool page: nodes, capacity by type, jobs, power now, energy today, busy vs idle, queue."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from commonpool.api.client.sdk import Client
from commonpool.scheduler.store.models import Job

from .conftest import PHONE, World, shot, visit

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def card(page: Any, title: str) -> Any:
    return page.locator(".card", has=page.get_by_role("heading", name=title, exact=True))


def test_pool_page_shows_nodes_capacity_power_and_energy(admin_page: Any, world: World) -> None:
    page = admin_page
    nodes = card(page, "Nodes online")
    expect(nodes.locator(".big")).to_have_text("2")
    expect(nodes.locator(".badge[data-state=ONLINE]")).to_be_visible()
    capacity = page.get_by_role("table", name=re.compile("CPUs and GPUs by type"))
    expect(capacity.get_by_role("row", name=re.compile("CPU cores"))).to_contain_text("2")
    jobs = card(page, "Jobs")
    expect(jobs.locator(".big")).to_have_text(re.compile(r"^\d+ running$"))
    expect(jobs).to_contain_text("1 queued")  # the job no node can take
    expect(jobs).to_contain_text("1 succeeded")
    power = card(page, "Pool power now")
    expect(power.locator(".big")).to_have_text(re.compile(r"^\d[\d.,]* W$"))
    expect(power).to_contain_text("from 2 nodes")
    expect(power.locator(".flag-estimated")).to_be_visible()  # no power counter here
    today = card(page, "Energy today (jobs)")
    expect(today.locator(".big")).to_have_text(re.compile(r"^[\d.,]+ k?Wh$"))
    expect(today.locator(".big")).not_to_have_text("0 Wh")
    expect(today).to_contain_text("CO₂e")
    expect(card(page, "Carbon saved")).to_contain_text("No ended job has waited for cleaner power")
    split = page.locator("#busy-idle")
    expect(split).to_contain_text("busy (jobs)")
    expect(split).to_contain_text("idle")
    expect(page.locator("#chart-queue svg")).to_be_visible()
    expect(page.locator("#chart-wait path.series")).to_have_count(1)  # placed jobs' waits
    shot(page, "pool")
    with Client(world.url, token=world.admin_token) as admin:
        usage = admin.pool_usage()
        digits_j = admin.job_energy(world.digits.id).energy_j
    assert usage.power_nodes == 2 and usage.power_w > 0 and usage.power_estimated
    assert [(r.kind, r.total) for r in usage.by_type] == [("cpu", 2.0)]
    assert usage.jobs_energy_j >= digits_j * (1 - 1e-9)


def test_pool_page_updates_without_reload(admin_page: Any) -> None:
    page = admin_page
    page.evaluate("window.__marker = 'same document'")
    first = page.locator("#updated").text_content()
    expect(page.locator("#updated")).not_to_have_text(first or "", timeout=10_000)
    assert page.evaluate("window.__marker") == "same document"


def test_pool_page_on_a_phone(admin_page: Any) -> None:
    page = admin_page
    page.set_viewport_size(PHONE)
    visit(page, "#/pool", "Pool")
    expect(page.locator(".card").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "pool-phone")


def _set_carbon_baseline(world: World, job_id: str, g_per_kwh: float | None) -> None:
    """What the loop stores when the carbon policy defers a job (`record_carbon_baselines`,
    tested in tests/store): the intensity the job would have run at, had it started."""
    assert world.pool.db is not None
    with world.pool.db.unit_of_work() as session:
        session.get(Job, job_id).carbon_baseline_g_per_kwh = g_per_kwh


def test_carbon_saved_shows_what_waiting_for_cleaner_power_saved(
    admin_page: Any, world: World
) -> None:
    page = admin_page
    with Client(world.url, token=world.admin_token) as admin:
        energy = admin.job_energy(world.digits.id)
        assert energy.co2e_g > 0 and energy.g_per_kwh
        # As if the carbon policy had deferred the digits job from an hour twice as dirty.
        _set_carbon_baseline(world, world.digits.id, 2 * energy.g_per_kwh)
        try:
            saved = admin.pool_summary().carbon_saved
            assert saved.jobs == 1 and saved.saved_g > 0 and saved.saved_percent
            visit(page, "#/pool", "Pool")
            page.reload()
            pool_card = card(page, "Carbon saved")
            expect(pool_card.locator(".big")).to_have_text(re.compile(r"^[\d.,]+ k?g CO₂e$"))
            expect(pool_card.locator("#carbon-saved")).to_have_text(
                re.compile(r"^[\d.,]+ % less, 1 job waited for cleaner power$"))
            expect(pool_card).to_contain_text("had they started when first deferred")
            page.evaluate("route => { window.location.hash = route; }",
                          f"#/jobs/{world.digits.id}")
            job_card = card(page, "Carbon saved by waiting")
            expect(job_card.locator(".big")).to_have_text(re.compile(r"^[\d.,]+ k?g CO₂e$"))
            expect(job_card).to_contain_text("when the carbon policy deferred it")
            shot(page, "carbon-saved")
        finally:
            _set_carbon_baseline(world, world.digits.id, None)
