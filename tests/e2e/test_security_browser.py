"""The security console in headless Chromium, as an officer uses it.

The officer logs in, asks the access tester, prepares a policy line, sees the
dry run name exactly the recorded decisions it turns around, confirms it, sees
the tester's answer change, then watches a clinician's break-glass alert
arrive and expire. An auditor gets the same console without its write parts.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_dashboard_browser import ARTIFACTS, browser  # noqa: F401 - the fixture
from tests.integration.rbac_support import World, rbac_world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with rbac_world(tmp_path / "data", f"sqlite+aiosqlite:///{tmp_path / 'hz.db'}") as w:
        w.server.services.break_glass.ttl = timedelta(seconds=4)  # type: ignore[union-attr]
        yield w


async def _login(page: Any, world: World, role: str, poll_ms: int = 500) -> None:
    from playwright.async_api import expect

    await page.goto(f"{world.server.base_url}/dashboard/security?poll={poll_ms}")
    await page.fill("#token", world.token(role))
    await page.click("#login-form button[type=submit]")
    await expect(page.get_by_test_id("whoami")).to_contain_text(role)


async def test_officer_changes_a_policy_after_its_dry_run_and_sees_break_glass(world: World, browser: Any) -> None:  # noqa: F811
    from playwright.async_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    doctor = world.server.client(world.token("primary_doctor"))  # doc1 at TWN001
    coordinator = world.server.client(world.token("coordinator"))
    try:
        assign = 'mutation($id: ID!) { assignExpert(id: $id, expertId: "exp1") { status } }'
        assert await doctor.error_code(assign, id=world.c1) == "FORBIDDEN"
        assert await doctor.error_code(assign, id=world.c1) == "FORBIDDEN"
        await coordinator.execute("{ consultations(first: 5) { totalCount } }")

        page = await browser.new_page(viewport={"width": 1280, "height": 1600})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        await _login(page, world, "security_officer", poll_ms=600_000)  # alerts must come by subscription
        await expect(page.get_by_test_id("role-primary_doctor")).to_contain_text("consultation")
        await expect(page.get_by_test_id("chain")).to_contain_text("intact")

        tester = page.locator("#tester")
        await tester.locator("input[name=user]").fill("doc1")
        await tester.locator("select[name=role]").select_option("primary_doctor")
        await tester.locator("input[name=domain]").fill("TWN001")
        await tester.locator("select[name=object]").select_option("consultation")
        await tester.locator("select[name=action]").select_option("assign")
        await tester.locator("button[type=submit]").click()
        await expect(page.get_by_test_id("tester-answer")).to_have_text("DENY")

        change = page.locator("#change")
        await change.locator("select[name=op]").select_option("add-p")
        await change.locator("select[name=role]").select_option("primary_doctor")
        await change.locator("input[name=domain]").fill("TWN001")
        await change.locator("select[name=object]").select_option("consultation")
        await change.locator("select[name=action]").select_option("assign")
        await change.locator("input[name=reason]").fill("石桥镇 doctors assign their own cases")
        await page.get_by_test_id("dry-run").click()
        rows = page.locator("#dryrun-changes tbody tr")
        await expect(rows).to_have_count(1)  # exactly the decisions that change: doc1's two refusals
        await expect(rows.first).to_have_attribute("data-key", "doc1|TWN001|consultation|assign")
        await expect(rows.first).to_contain_text("denied → granted")
        await expect(rows.first.locator("td.num")).to_have_text("2")
        await page.screenshot(path=str(ARTIFACTS / "security-dry-run.png"), full_page=True)
        # nothing applied before the confirmation
        await tester.locator("button[type=submit]").click()
        await expect(page.get_by_test_id("tester-answer")).to_have_text("DENY")
        await page.get_by_test_id("confirm").click()
        await expect(page.locator("#change-error")).to_contain_text("applied")
        added = 'tr[data-line="p, primary_doctor, TWN001, consultation, assign"]'
        line = page.get_by_test_id("role-primary_doctor").locator(added)
        await expect(line).to_have_count(1)
        await tester.locator("button[type=submit]").click()
        await expect(page.get_by_test_id("tester-answer")).to_have_text("ALLOW")
        await expect(page.get_by_test_id("tester-reasons")).to_contain_text(
            "allowed by p, primary_doctor, TWN001, consultation, assign")
        await expect(page.get_by_test_id("audit")).to_contain_text("reason: 石桥镇 doctors assign their own cases")

        await expect(page.get_by_test_id("live")).to_have_text("live")  # subscribed to securityAlerts
        await page.wait_for_timeout(300)  # the subscribe message reaches the server
        grant = await doctor.execute(
            'mutation { breakGlass(patientId: "pat2", reason: "患者昏迷, 需要既往史") { id } }')
        alert = page.locator(f'#alerts tr[data-id="{grant["breakGlass"]["id"]}"]')
        await expect(alert).to_have_attribute("data-status", "ACTIVE")
        await expect(alert).to_contain_text("患者昏迷, 需要既往史")
        await page.screenshot(path=str(ARTIFACTS / "security-break-glass-alert.png"), full_page=True)
        await alert.locator("button").click()
        await expect(alert).to_contain_text("acknowledged by sec1")
        await expect(alert).to_have_attribute("data-status", "EXPIRED", timeout=15_000)
        await page.screenshot(path=str(ARTIFACTS / "security-break-glass-expired.png"), full_page=True)
        assert problems == []
    finally:
        await doctor.aclose()
        await coordinator.aclose()


async def test_auditor_reads_but_cannot_change_and_a_bad_file_names_its_line(world: World, browser: Any) -> None:  # noqa: F811
    from playwright.async_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 1200})
    await _login(page, world, "auditor")
    await expect(page.get_by_test_id("role-expert")).to_contain_text("patient")
    await expect(page.locator("#change")).to_be_hidden()
    await expect(page.get_by_test_id("import-csv")).to_be_hidden()
    await page.get_by_test_id("export-csv").click()
    await expect(page.get_by_test_id("csv")).to_have_value(re.compile(r"p, expert, \*, patient, read"))
    await page.screenshot(path=str(ARTIFACTS / "security-auditor.png"), full_page=True)

    officer = await browser.new_page(viewport={"width": 1280, "height": 1200})
    await _login(officer, world, "security_officer")
    await officer.get_by_test_id("csv").fill("p, expert, *, patient, read\np, surgeon, *, patient, read\n")
    await officer.locator("#import-reason").fill("restore from backup")
    await officer.get_by_test_id("import-csv").click()
    await expect(officer.get_by_test_id("csv-error")).to_contain_text("BAD_INPUT")
    await expect(officer.get_by_test_id("csv-error")).to_contain_text("line 2")
    await expect(officer.get_by_test_id("dryrun")).to_be_hidden()
