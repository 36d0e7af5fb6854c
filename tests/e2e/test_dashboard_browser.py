"""The operations dashboard in headless Chromium (Debian's ``chromium`` driven by Playwright).

The real server runs in this event loop; HL7 messages arrive over MLLP; the
test watches the chart and counters move, opens an errored message, reads its
raw content, reprocesses it, and saves screenshots under ``test-artifacts/``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from huizhen.adapters.mllp_client import MllpClient
from tests.conftest import IN_CI
from tests.helpers import RunningServer, running_server
from tests.ops_support import adt, booking, order

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = os.environ.get("HUIZHEN_TEST_CHROMIUM", "/usr/bin/chromium")


def need_browser() -> str:
    missing = []
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        missing.append(f"{CHROMIUM} (Debian package chromium; .ci/run installs it)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install -e '.[test]')")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if IN_CI:
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "data", f"sqlite+aiosqlite:///{tmp_path / 'hz.db'}") as srv:
        yield srv


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = need_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield b
        await b.close()


async def send(server: RunningServer, *messages: bytes) -> None:
    client = MllpClient("127.0.0.1", server.ports["mllp"], ack_timeout_s=30)
    await client.connect()
    try:
        for m in messages:
            await client.send(m)
    finally:
        await client.close()


async def test_admin_watches_messages_and_reprocesses_an_error(server: RunningServer, browser: Any) -> None:
    from playwright.async_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    await send(server, adt("B-1"), booking("B-2"))
    page = await browser.new_page(viewport={"width": 1280, "height": 1400})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    await page.goto(f"{server.base_url}/dashboard/?poll=600000")  # no polling: changes must come by subscription
    await page.fill("#token", server.token("ops-admin", "integration_admin"))
    await page.click("#login-form button[type=submit]")
    await expect(page.get_by_test_id("whoami")).to_contain_text("integration_admin")
    await expect(page.locator("#part-coordinator")).to_be_hidden()
    mllp_row = page.locator('#channels tr[data-channel="mllp"]')
    await expect(mllp_row.locator("td.received")).to_have_text("2")
    await expect(mllp_row.locator("td.errors")).to_have_text("1")
    await expect(page.get_by_test_id("count-received")).to_have_text("2")
    await expect(page.locator('#chart polyline[data-series="mllp"]')).to_have_attribute("data-total", "2")
    await page.screenshot(path=str(ARTIFACTS / "dashboard-before.png"), full_page=True)

    await expect(page.locator("#live")).to_have_text("live")  # subscribed to messageProcessed
    await page.wait_for_timeout(300)  # the subscribe message reaches the server
    await send(server, adt("B-3", mrn="OPS3"), order("B-4"))  # live: pushed by the subscription, no reload
    await expect(page.get_by_test_id("count-received")).to_have_text("4")
    await expect(mllp_row.locator("td.received")).to_have_text("4")
    await expect(page.locator('#chart polyline[data-series="mllp"]')).to_have_attribute("data-total", "4")
    await expect(page.get_by_test_id("count-errors")).to_have_text("1")

    await page.locator('#journal tr[data-status="ERROR"]').first.click()
    panel = page.get_by_test_id("message")
    await expect(panel).to_be_visible()
    await expect(page.get_by_test_id("message-ack")).to_contain_text("MSA|AE|B-2")
    await page.click("#show-raw")
    await expect(page.get_by_test_id("message-raw")).to_contain_text("SIU^S12")
    await expect(page.get_by_test_id("message-raw")).to_contain_text("王^大明")
    await page.screenshot(path=str(ARTIFACTS / "dashboard-error-message.png"), full_page=True)
    await page.get_by_test_id("reprocess").click()
    await expect(page.locator("#reprocess-result")).to_contain_text("PROCESSED")
    await expect(page.locator('#message dd[data-field="status"]')).to_have_text("PROCESSED")
    await expect(page.get_by_test_id("reprocess")).to_be_hidden()
    await expect(page.get_by_test_id("count-errors")).to_have_text("0")
    await page.screenshot(path=str(ARTIFACTS / "dashboard-reprocessed.png"), full_page=True)
    assert problems == []
    async with server.services.store.read() as repo:
        events = [e async for e in repo.audit.all()]
    assert [(e.actor, e.outcome) for e in events if e.action == "read-raw"] == [("ops-admin", "success")]


async def test_coordinator_sees_the_board_only(server: RunningServer, browser: Any) -> None:
    from playwright.async_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    await send(server, order("C-1"))
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(f"{server.base_url}/dashboard/")
    await page.fill("#token", server.token("coord-1", "coordinator", facility="*"))
    await page.click("#login-form button[type=submit]")
    board = page.get_by_test_id("board")
    await expect(board).to_contain_text("心血管内科")
    await expect(board.locator("tbody tr").first.locator("td").nth(1)).to_have_text("CRITICAL")
    await expect(page.locator("#part-integration")).to_be_hidden()
    await page.screenshot(path=str(ARTIFACTS / "dashboard-coordinator.png"), full_page=True)
    # the token stays in this tab: a reload logs straight back in
    await page.reload()
    await expect(board).to_contain_text("心血管内科")


async def test_bad_token_is_refused_with_a_message(server: RunningServer, browser: Any) -> None:
    from playwright.async_api import expect

    page = await browser.new_page()
    await page.goto(f"{server.base_url}/dashboard/")
    await page.fill("#token", "not-a-token")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#login-error")).to_contain_text("UNAUTHENTICATED")
    await expect(page.locator("#main")).to_be_hidden()
