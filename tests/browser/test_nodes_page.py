"""The Nodes page: state, donor, GPU type, utilisation sparkline, lease; admin-only actions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from commonpool.api.client.sdk import Client

from .conftest import PHONE, World, shot, visit

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_admin_sees_every_node_with_its_state_utilisation_and_lease(
    admin_page: Any, world: World
) -> None:
    page = admin_page
    visit(page, "#/nodes", "Nodes")
    table = page.get_by_role("table", name="Nodes of the pool")
    for name in ("local-0", "local-1"):
        row = table.get_by_role("row", name=re.compile(name))
        expect(row.locator(".badge")).to_have_text("ONLINE")
        expect(row).to_contain_text("region GB")
        expect(row).to_contain_text("none")  # no GPU
        expect(row.get_by_role("cell", name=re.compile("heartbeat .* ago"))).to_be_visible()
        expect(row.get_by_role("button", name=f"drain {name}")).to_be_visible()
        expect(row.get_by_role("button", name=f"cordon {name}")).to_be_visible()
    # the sparkline grows with each heartbeat the page sees (every 2 s here, polled every 3 s)
    expect(table.locator("svg.sparkline polyline").first).to_be_visible(timeout=20_000)
    shot(page, "nodes")


def test_admin_cordons_and_uncordons_a_node_through_the_api(admin_page: Any, world: World) -> None:
    page = admin_page
    visit(page, "#/nodes", "Nodes")
    row = page.get_by_role("table", name="Nodes of the pool").get_by_role(
        "row", name=re.compile("local-1")
    )
    row.get_by_role("button", name="cordon local-1").click()
    dialog = page.get_by_role("dialog", name="Cordon node local-1?")
    expect(dialog).to_be_visible()
    dialog.get_by_label(re.compile("Reason")).fill("dashboard test")
    dialog.get_by_role("button", name="Cordon").click()
    expect(row.locator(".badge")).to_have_text("CORDONED")
    expect(page.get_by_role("status")).to_contain_text("local-1 is CORDONED")
    with Client(world.url, token=world.admin_token) as admin:
        audit = admin.audit_page(action="node.cordon").items
    assert audit and audit[0].actor == "admin" and audit[0].detail.get("reason") == "dashboard test"
    row.get_by_role("button", name="uncordon local-1").click()
    page.get_by_role("dialog").get_by_role("button", name="Uncordon").click()
    expect(row.locator(".badge")).to_have_text("ONLINE")


def test_non_admin_sees_no_drain_button_and_is_refused_if_forced(
    user_page: Any, world: World
) -> None:
    page = user_page
    visit(page, "#/nodes", "Nodes")
    table = page.get_by_role("table", name="Nodes of the pool")
    expect(table.get_by_role("row")).to_have_count(3)  # header + 2 nodes: the user sees them
    expect(page.get_by_role("button", name=re.compile("drain|cordon", re.I))).to_have_count(0)
    expect(table.get_by_role("columnheader", name="Actions")).to_have_count(0)
    node_id = world.pool.node_ids[0]
    status = page.evaluate(
        """async (nodeId) => {
            const token = sessionStorage.getItem("commonpool.token");
            const response = await fetch(`/api/v1/nodes/${nodeId}/drain`, {
                method: "POST",
                headers: {Authorization: `Bearer ${token}`, "Content-Type": "application/json"},
                body: JSON.stringify({reason: "forced from the page"}),
            });
            return {status: response.status, body: await response.json()};
        }""",
        node_id,
    )
    assert status["status"] == 403, status
    assert status["body"]["code"] == "forbidden"
    with Client(world.url, token=world.admin_token) as admin:
        assert admin.get_node(node_id).state == "ONLINE"
    shot(page, "nodes-non-admin")


def test_nodes_page_on_a_phone(admin_page: Any) -> None:
    page = admin_page
    page.set_viewport_size(PHONE)
    visit(page, "#/nodes", "Nodes")
    expect(page.get_by_role("table", name="Nodes of the pool")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "nodes-phone")
