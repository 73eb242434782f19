"""The Control Room in headless Chromium (Debian's package, driven by Playwright for Python) on
a running fleet: boost shows new round ids, fast-lane changes show in the coach panel, pausing
onboarding shows it paused, API errors and the token prompt are visible to the operator.

Screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.fleet import Fleet
from harness.processes import ROOT

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _page(browser, width: int, height: int):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def test_control_room_drives_a_running_fleet(fleet: Fleet, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    fleet.start("training", "meta", "coach", "reports", "web")
    # What pre-arm would do: the default learner training, the coach running.
    assert fleet["training"].post("/api/v1/training/start", {})[0] == 200
    assert fleet["coach"].post("/api/v1/auto-coach/start", {})[0] == 200
    ARTIFACTS.mkdir(exist_ok=True)

    page = _page(browser, 1280, 800)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    external: list[str] = []
    page.on(
        "request",
        lambda req: external.append(req.url) if not req.url.startswith(fleet["web"].url) else None,
    )
    page.goto(fleet["web"].url + "/control-room")

    expect(page.get_by_test_id("stream-state")).to_have_text("live")
    expect(page.get_by_test_id("coach-active")).to_contain_text("active")
    expect(page.locator("#processes-body tr[data-service=coach]")).to_be_visible()

    # Boost: new round ids appear.
    _, before = fleet["training"].get("/api/v1/learners/default")
    rounds_before = before["learner"]["rounds"]
    page.get_by_label("Boost rounds", exact=True).fill("3")
    page.get_by_role("button", name="Boost", exact=True).click()
    ids_el = page.get_by_test_id("boost-round-ids")
    expect(ids_el).to_have_text(re.compile(r"^\d+, \d+, \d+$"))
    ids = [int(x) for x in ids_el.inner_text().split(", ")]
    assert len(set(ids)) == 3
    _, after = fleet["training"].get("/api/v1/learners/default")
    assert after["learner"]["rounds"] >= rounds_before + 3

    # Fast lane: weight and interval reach the coach and its status panel.
    page.get_by_label("Weight", exact=True).fill("3")
    page.get_by_label("Interval (ms)", exact=True).fill("750")
    page.get_by_role("button", name="Apply fast lane").click()
    expect(page.get_by_test_id("coach-fastlane-weight")).to_have_text("3")
    expect(page.get_by_test_id("coach-fastlane-interval")).to_have_text("750")
    _, status = fleet["coach"].get("/api/v1/auto-coach/status")
    assert status["status"]["fastLane"]["weight"] == 3
    assert status["status"]["fastLane"]["intervalMs"] == 750

    # Onboarding: pause shows paused, and the state is really paused.
    page.get_by_role("button", name="Pause onboarding").click()
    expect(page.get_by_test_id("scale-paused")).to_have_text("paused")
    assert fleet["web"].get("/api/v1/system/scale")[1]["scale"]["paused"] is True

    # The gates panel lists every evaluated gate with a verdict.
    expect(page.get_by_test_id("gate-verdict")).to_have_count(7)
    page.wait_for_timeout(1500)  # a couple more snapshots so the chart has a line
    page.screenshot(path=str(ARTIFACTS / "control-room-1280x800.png"))
    page.screenshot(path=str(ARTIFACTS / "control-room-1280x800-full.png"), full_page=True)

    narrow = _page(browser, 390, 844)
    narrow.goto(fleet["web"].url + "/control-room")
    expect(narrow.get_by_test_id("stream-state")).to_have_text("live")
    expect(narrow.get_by_test_id("coach-fastlane-weight")).to_have_text("3")
    width = narrow.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the narrow layout scrolls sideways ({width}px)"
    narrow.screenshot(path=str(ARTIFACTS / "control-room-390x844.png"))
    narrow.screenshot(path=str(ARTIFACTS / "control-room-390x844-full.png"), full_page=True)

    # An API error is shown to the operator, not swallowed: the coach goes away, Boost fails.
    fleet["coach"].stop()
    page.get_by_role("button", name="Boost", exact=True).click()
    message = page.get_by_test_id("message")
    expect(message).to_contain_text("upstream_unavailable")
    expect(message).to_contain_text("coach")

    assert errors == []
    assert external == []  # nothing fetched from the network


def test_control_room_asks_for_the_token_once_on_401(fleet: Fleet, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    fleet.start("web", env={"TOOLOO_API_TOKEN": "control-room-token"})
    page = _page(browser, 1280, 800)
    page.goto(fleet["web"].url + "/control-room")
    expect(page.get_by_test_id("stream-state")).to_have_text("live")

    page.get_by_role("button", name="Pause onboarding").click()
    expect(page.get_by_test_id("message")).to_contain_text("401")
    token = page.get_by_label("API token", exact=True)
    expect(token).to_be_visible()
    token.fill("control-room-token")
    page.get_by_role("button", name="Save token").click()
    # The refused call is retried with the token and succeeds.
    expect(page.get_by_test_id("scale-paused")).to_have_text("paused")
    expect(token).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('tooloo.apiToken')") == "control-room-token"
    # Later calls carry it without asking again.
    page.get_by_role("button", name="Resume onboarding").click()
    expect(page.get_by_test_id("scale-paused")).to_have_text("running")
    expect(token).to_be_hidden()
