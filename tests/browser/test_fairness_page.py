"""The Fairness page: share vs usage per project, and donor credits."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from commonpool.api.client.sdk import Client

from .conftest import PHONE, World, shot, visit

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_fairness_shows_share_usage_and_energy_per_project(admin_page: Any, world: World) -> None:
    page = admin_page
    visit(page, "#/fairness", "Fairness")
    table = page.get_by_role("table", name="Share vs usage per project, and donor credits")
    row = table.get_by_role("row", name=re.compile("^default"))
    expect(row).to_be_visible()
    expect(row.locator("td").nth(0)).to_contain_text("(100 %)")  # the only project: all the weight
    expect(row.locator("svg.bar")).to_have_count(2)  # entitled and usage share
    energy = row.locator("td[data-label='Energy used']")
    expect(energy).to_contain_text("CO₂e")
    expect(energy).not_to_contain_text("0 Wh,")  # the digits job's energy is charged here
    expect(page.get_by_text("Shares are of the pool's capacity (2 CPUs")).to_be_visible()
    shot(page, "fairness")
    with Client(world.url, token=world.user_token) as ada:
        fairness = ada.pool_fairness()
    default = next(p for p in fairness.projects if p.project == "default")
    assert default.weight_share == 1.0 and default.queued_jobs == 1  # the job no node can take
    assert default.energy_j > 0 and default.co2e_g > 0
    assert fairness.capacity.cpus == 2


def test_fairness_page_on_a_phone(user_page: Any) -> None:
    page = user_page
    page.set_viewport_size(PHONE)
    visit(page, "#/fairness", "Fairness")
    expect(page.get_by_role("table")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "fairness-phone")
