"""The Artifacts and Services pages: browse and search, a model card, a checked download, stop.

Runs last in the package (by name): what it creates is gone or final when it ends.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from commonpool.api.client.sdk import Client
from commonpool.scheduler.spec import JobSpec

from .conftest import World, shot, visit

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_browse_search_open_a_card_and_download(
    admin_page: Any, world: World, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "digits.csv").write_text("0,1,2\n3,4,5\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.onnx").write_bytes(b"not really onnx")
    with Client(world.url, token=world.admin_token) as admin:
        data = admin.upload_artifact(tmp_path / "data", "digits-table", kind="dataset",
                                     description="the digits as a table")
        model = admin.upload_artifact(tmp_path / "model", "shared-digits", kind="model",
                                      format="onnx", licence="MIT")
    page = admin_page
    visit(page, "#/artifacts", "Artifacts")
    table = page.get_by_role("table", name="Models and datasets you may see")
    expect(table.locator("tbody tr")).to_have_count(2)
    page.get_by_label("Search").fill("table")
    page.get_by_role("button", name="Search").click()
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table.locator(f"tr[data-row='{data.ref}']")).to_contain_text("dataset")
    shot(page, "artifacts")

    page.get_by_label("Search").fill("")
    page.get_by_role("button", name="Search").click()
    table.get_by_role("link", name=model.ref).click()
    page.get_by_role("heading", name=model.ref, level=1).wait_for()
    card = page.get_by_role("region", name="Model card")
    expect(card).to_contain_text(model.sha256)
    expect(card).to_contain_text("MIT")
    expect(page.get_by_role("region", name="Reuse")).to_contain_text("Jobs started from it")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download").click()
    saved = tmp_path / "saved.tar"
    download.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == model.sha256
    expect(page.locator("#notice")).to_contain_text("sha256 checked")
    shot(page, "artifact")


def test_services_are_listed_and_stopped_from_the_page(admin_page: Any, world: World) -> None:
    with Client(world.url, token=world.admin_token) as admin:
        model = admin.get_artifact("shared-digits")
        service = admin.submit_job(JobSpec.model_validate({
            "name": "digits-api", "kind": "service", "project": "default",
            "service": {"model": model.ref}, "label_selector": {"site": "nowhere"},
        }))  # fmt: skip
    page = admin_page
    visit(page, "#/services", "Services")
    row = page.get_by_role("table", name="Services, newest first").locator(
        f"tr[data-row='{service.id}']"
    )
    expect(row.locator(".badge")).to_have_text("QUEUED")
    shot(page, "services")
    row.get_by_role("button", name=re.compile("Stop service")).click()
    page.get_by_role("dialog").get_by_role("button", name="Stop service").click()
    expect(row.locator(".badge")).to_have_text("CANCELLED")
    with Client(world.url, token=world.admin_token) as admin:
        assert admin.get_job(service.id).state == "CANCELLED"
