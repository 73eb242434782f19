"""The Control Room's fast-lane panel in headless Chromium (Debian's package, driven by
Playwright for Python) on a running fleet: it lists the lane's members told apart (pinned,
automatic, pinned out), pins a learner in, pins an automatic member out, unpins, and shows a
refused pin (unknown learner) to the operator; each change is checked against the coach's API.

Screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.browser import ARTIFACTS
from harness.fleet import Fleet
from harness.polling import wait_for

pytestmark = pytest.mark.integration

COACH = "/api/v1/auto-coach"


def members(fleet: Fleet) -> dict[str, Any]:
    code, body = fleet["coach"].get(f"{COACH}/fast-lane")
    assert code == 200, body
    return body["members"]


def test_fast_lane_panel_pins_and_unpins_learners(fleet: Fleet, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    fleet.start("training", "coach", "reports", "web")
    for learner in ("a", "b", "c"):
        assert fleet["training"].post("/api/v1/learners", {"id": learner, "active": True})[0] == 201
    # Nobody can become ready (an average of 100), and with a margin of 100 every learner the
    # coach coaches is close to readiness: all three enter the lane on their own.
    assert fleet["coach"].post(f"{COACH}/settings", {"minAvgMastery": 100})[0] == 200
    lane = {"intervalMs": 100, "autoMargin": 100}
    assert fleet["coach"].post(f"{COACH}/fast-lane", lane)[0] == 200
    assert fleet["coach"].post(f"{COACH}/start", {})[0] == 200
    wait_for(lambda: len(members(fleet)["automatic"]) == 3, timeout_s=30)
    ARTIFACTS.mkdir(exist_ok=True)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(fleet["web"].url + "/control-room")

    panel = page.get_by_test_id("fastlane-panel")
    expect(panel.get_by_role("heading", name="Fast-lane members")).to_be_visible()
    rows = panel.get_by_test_id("fastlane-member")
    expect(rows).to_have_count(3)
    for learner in ("a", "b", "c"):
        expect(panel.locator(f"tr[data-learner={learner}]")).to_have_attribute(
            "data-kind", "automatic"
        )
    expect(panel.get_by_test_id("fastlane-summary")).to_contain_text("3 automatic")

    # Pin a in: it shows as pinned, and the coach has it pinned.
    panel.get_by_label("Learner id", exact=True).fill("a")
    panel.get_by_role("button", name="Pin in", exact=True).click()
    expect(panel.get_by_test_id("fastlane-pin-result")).to_have_text("a pinned into the fast lane")
    expect(panel.locator("tr[data-learner=a]")).to_have_attribute("data-kind", "pinned")
    assert members(fleet)["pinned"] == ["a"]

    # Pin the automatic member b out from its row.
    panel.get_by_role("button", name="Pin out b", exact=True).click()
    expect(panel.locator("tr[data-learner=b]")).to_have_attribute("data-kind", "pinned out")
    now = members(fleet)
    assert now["excluded"] == ["b"] and "b" not in [m["learner"] for m in now["automatic"]]

    # An unknown learner: the refusal is shown, nothing changes.
    panel.get_by_label("Learner id", exact=True).fill("ghost")
    panel.get_by_role("button", name="Pin in", exact=True).click()
    result = panel.get_by_test_id("fastlane-pin-result")
    expect(result).to_contain_text("404")
    expect(result).to_contain_text("learner_not_found")
    after = members(fleet)
    assert (after["pinned"], after["excluded"]) == (["a"], ["b"])
    page.screenshot(path=str(ARTIFACTS / "control-room-fastlane-1280x900.png"), full_page=True)

    # On a phone the panel and its table fit the width (the table scrolls inside its box).
    narrow = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    narrow.goto(fleet["web"].url + "/control-room")
    expect(narrow.get_by_test_id("fastlane-member")).to_have_count(3)
    width = narrow.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the narrow layout scrolls sideways ({width}px)"
    narrow.get_by_test_id("fastlane-panel").screenshot(
        path=str(ARTIFACTS / "control-room-fastlane-390x844.png")
    )

    # Unpin both from their rows: neither pin is left (the automatic rule has them again).
    panel.get_by_role("button", name="Unpin a", exact=True).click()
    expect(panel.get_by_test_id("fastlane-pin-result")).to_have_text("a unpinned")
    panel.get_by_role("button", name="Unpin b", exact=True).click()
    expect(panel.get_by_test_id("fastlane-pin-result")).to_have_text("b unpinned")
    final = members(fleet)
    assert (final["pinned"], final["excluded"]) == ([], [])
    expect(panel.locator("tr[data-kind=pinned]")).to_have_count(0)
    expect(panel.locator("tr[data-kind='pinned out']")).to_have_count(0)
    assert errors == []
