"""Chromium (headless, fake camera) runs Huizhen's /call page and calls an aiortc peer.

Needs Debian's ``chromium`` at /usr/bin/chromium (``.ci/run`` installs it): skipped
with a reason without it, failed under CI=true. Playwright drives it; no browser
is downloaded.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.e2e.webrtc_support import RtcPeer
from tests.helpers import RunningServer, running_server
from tests.signaling_support import FACILITY, SignalingClient, assigned_consultation, seed_directory

CHROMIUM = os.environ.get("HUIZHEN_TEST_CHROMIUM", "/usr/bin/chromium")


def need_chromium() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    message = f"{CHROMIUM} not installed (Debian package chromium; .ci/run installs it)"
    if IN_CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "data", f"sqlite+aiosqlite:///{tmp_path / 'huizhen.db'}") as srv:
        await seed_directory(srv.services)
        yield srv


async def test_browser_call_page_calls_an_aiortc_peer(server: RunningServer) -> None:
    chromium = need_chromium()
    from playwright.async_api import async_playwright

    cid = await assigned_consultation(server.services)
    expert = RtcPeer(await SignalingClient.connect(server.base_url, server.token("exp1", "expert")))
    await expert.client.join(cid)
    expert.serve()
    token = server.token("doc1", "primary_doctor", facility=FACILITY)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium,
            args=["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox"],
        )
        try:
            page = await browser.new_page(bypass_csp=True)  # the page CSP forbids eval; Playwright needs it
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{server.base_url}/call/{cid}#token={token}")
            await page.wait_for_function("window.huizhenCall && window.huizhenCall.status === 'connected'",
                                         timeout=30_000)
            await asyncio.wait_for(expert.channel_open.wait(), 30)
            first = await asyncio.wait_for(expert.messages.get(), 15)
            assert first.startswith("你好 from ")
            expert.channel.send("收到，请描述症状")
            await page.wait_for_function("window.huizhenCall.messages.some(m => m.text === '收到，请描述症状')",
                                         timeout=15_000)
            await asyncio.wait_for(expert.wait_frames(10), 30)  # Chromium's fake camera, decoded by aiortc
            await page.wait_for_function("window.huizhenCall.framesReceived >= 10", timeout=30_000)
            assert await page.locator("#status").text_content() == "connected"
            assert not errors
        finally:
            await browser.close()
            await expert.close()
