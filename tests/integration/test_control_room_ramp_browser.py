"""The Control Room's ramp panel in headless Chromium (the `browser` fixture of
tests/conftest.py): it shows the ramp off, enables it with an actor and short stages
(the state really changes and shows a stage), shows the API's refusal of stages that do not
increase, and disables it. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re

import pytest

from harness.browser import ARTIFACTS
from harness.fleet import Fleet

pytestmark = pytest.mark.integration


def test_ramp_panel_switches_the_ramp(fleet: Fleet, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    fleet.start("training", "meta", "coach", "reports", "web", env={"TOOLOO_RAMP_CHECK_S": "0.5"})
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(fleet["web"].url + "/control-room")

    panel = page.get_by_test_id("ramp-panel")
    expect(page.get_by_test_id("ramp-enabled")).to_have_text("off")

    # Stages that do not increase: the API's 422 is shown, nothing changes.
    page.get_by_test_id("ramp-actor").fill("ops-anna")
    page.get_by_test_id("ramp-stages-input").fill("5, 3")
    page.get_by_test_id("ramp-on").click()
    expect(page.get_by_test_id("ramp-error")).to_contain_text("increasing")
    assert fleet["web"].get("/api/v1/system/ramp")[1]["ramp"]["enabled"] is False

    # Enabled with short stages: the ramp starts and the panel shows its stage.
    page.get_by_test_id("ramp-stages-input").fill("2, 3")
    page.get_by_test_id("ramp-hold-input").fill("30")
    page.get_by_test_id("ramp-on").click()
    expect(page.get_by_test_id("ramp-enabled")).to_have_text("on")
    expect(page.get_by_test_id("ramp-stage")).to_contain_text("1 of 2 (2 learners)")
    # Its first action, as recorded: a start at 2, or (this fleet's coach is not started, which
    # fails the active gate's `coach_active`) a throttle held at 2.
    expect(page.get_by_test_id("ramp-last")).to_have_text(re.compile(r"^(start|throttle) → 2"))
    ramp = fleet["web"].get("/api/v1/system/ramp")[1]["ramp"]
    assert ramp["enabled"] is True and ramp["stages"] == [2, 3]
    assert fleet["web"].get("/api/v1/system/scale")[1]["scale"]["target"] == 2
    panel.screenshot(path=str(ARTIFACTS / "control-room-ramp.png"))

    page.get_by_test_id("ramp-off").click()
    expect(page.get_by_test_id("ramp-enabled")).to_have_text("off")
    history = fleet["web"].get("/api/v1/system/gates/history")[1]["history"]
    switches = [(h["type"], h["actor"]) for h in history if h["type"].startswith("ramp_")]
    assert switches[0] == ("ramp_disabled", "ops-anna")
    assert ("ramp_enabled", "ops-anna") in switches
    assert errors == []
