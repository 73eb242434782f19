"""The Control Room in headless Chromium (Debian's package, driven by Playwright for Python) on
a running fleet: boost shows new round ids, fast-lane changes show in the coach panel, pausing
onboarding shows it paused, API errors and the token prompt are visible to the operator.

Screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from harness.browser import ARTIFACTS
from harness.fleet import Fleet
from shared.keys import Keys

pytestmark = pytest.mark.integration


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


FAST_RECORD = {"TOOLOO_GATES_RECORD_INTERVAL": "0.3"}
GATE2 = "gate-2-nov-2"
XSS_NOTE = 'finance Q4 <img src=x onerror="window.__xss = 1">'


def _history(fleet: Fleet, query: str = "") -> list[dict[str, Any]]:
    status, body = fleet["web"].get(f"/api/v1/system/gates/history{query}")
    assert status == 200, body
    return body["history"]


def _paused(fleet: Fleet) -> tuple[bool, bool, bool]:
    """(onboarding paused, coach stopped, meta paused) as the API reports them."""
    web = fleet["web"]
    scale = web.get("/api/v1/system/scale")[1]["scale"]
    coach = web.get("/api/v1/auto-coach/status")[1]["status"]
    meta = web.get("/api/v4/meta-learning/status?learner=default")[1]["status"]
    return scale["paused"], not coach["active"], meta["paused"]


def test_control_room_rollout_decisions_signoffs_and_full_pause(fleet: Fleet, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    fleet.start("training", "meta", "coach", "reports")
    fleet.start("web", env=FAST_RECORD)
    assert fleet["training"].post("/api/v1/training/start", {})[0] == 200
    assert fleet["coach"].post("/api/v1/auto-coach/start", {})[0] == 200
    ARTIFACTS.mkdir(exist_ok=True)

    page = _page(browser, 1280, 800)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(fleet["web"].url + "/control-room")
    expect(page.get_by_test_id("stream-state")).to_have_text("live")

    # The rollout's decisions as the dashboard JSON says them.
    _, gates = fleet["web"].get("/api/v1/system/gates")
    expect(page.get_by_test_id("current-phase")).to_have_text(gates["current_phase"])
    expect(page.get_by_test_id("active-gate")).to_have_text(gates["active_gate"])
    expect(page.get_by_test_id("next-decision")).to_contain_text(gates["next_decision"]["gate"])
    expect(page.get_by_test_id("next-decision")).to_contain_text(gates["next_decision"]["when"])
    expect(page.get_by_test_id("pause-level")).to_contain_text("running: no pause")

    # The decision record lists the recorder's first verdicts, newest first.
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=record-entry][data-type=verdict]').length >= 6",
        timeout=20_000,
    )

    # A bad sign-off: the API's 422 is shown beside the form, and nothing is recorded.
    page.get_by_test_id("signoff-gate").select_option(GATE2)
    page.get_by_test_id("signoff-criterion").select_option("revenue_signal")
    expect(page.get_by_test_id("signoff-needs")).to_contain_text(">= 5.8 %")
    page.get_by_test_id("signoff-value").fill("6.2")
    page.get_by_test_id("signoff-actor").fill("   ")
    page.get_by_role("button", name="Record sign-off").click()
    error = page.get_by_test_id("signoff-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("422")
    expect(error).to_contain_text("actor")
    page.get_by_test_id("signoff-value").fill("")
    page.get_by_test_id("signoff-actor").fill("cfo")
    page.get_by_role("button", name="Record sign-off").click()
    expect(error).to_contain_text("value")
    assert [e for e in _history(fleet, "?limit=1000") if e["type"] == "signoff"] == []
    _, gates = fleet["web"].get("/api/v1/system/gates")
    gate2 = next(g for g in gates["gates"] if g["id"] == GATE2)
    revenue = next(c for c in gate2["criteria"] if c["id"] == "revenue_signal")
    assert revenue["status"] == "not_measured" and "signed_off" not in revenue

    # A good one: it shows under its gate and in the record, and the API has it. Its note,
    # markup included, is shown as text, never run.
    page.get_by_test_id("signoff-value").fill("6.2")
    page.get_by_test_id("signoff-note").fill(XSS_NOTE)
    page.get_by_role("button", name="Record sign-off").click()
    expect(error).to_be_hidden()
    expect(page.get_by_test_id("signoff-result")).to_contain_text("revenue_signal = 6.2 by cfo")
    signed = page.locator(f"li[data-gate={GATE2}] [data-criterion=revenue_signal]")
    expect(signed).to_contain_text("6.2 %")
    expect(signed).to_contain_text("signed off by cfo")
    expect(signed).to_contain_text(XSS_NOTE)
    entry = page.locator("[data-testid=record-entry][data-type=signoff]")
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text("revenue_signal = 6.2 signed off by cfo")
    recorded = [e for e in _history(fleet, f"?gate={GATE2}") if e["type"] == "signoff"]
    assert len(recorded) == 1 and recorded[0]["actor"] == "cfo" and recorded[0]["value"] == 6.2
    assert recorded[0]["note"] == XSS_NOTE
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img").count() == 0

    # Pause all asks first: cancelled, nothing happens.
    page.get_by_role("button", name="Pause all").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert _paused(fleet) == (False, False, False)

    # Confirmed with an actor: the API reports the full pause, the page says L4.
    page.get_by_role("button", name="Pause all").click()
    page.get_by_test_id("confirm-actor").fill("ops-lead")
    page.get_by_test_id("confirm-note").fill("drill")
    page.get_by_role("button", name="Confirm pause all").click()
    expect(page.get_by_test_id("pause-level")).to_contain_text("L4 full pause")
    expect(page.get_by_test_id("pause-pill")).to_have_text("pause: L4 full")
    assert _paused(fleet) == (True, True, True)
    # Gates' own verdict changes may be recorded in between: the newest full pause is the one.
    newest = next(e for e in _history(fleet, "?limit=100") if e["type"] == "full_pause")
    assert newest["actor"] == "ops-lead"
    assert newest["note"] == "drill"
    expect(page.get_by_test_id("pause-last")).to_contain_text("paused by ops-lead")
    expect(page.locator("[data-testid=record-entry][data-type=full_pause]")).to_contain_text(
        "ops-lead"
    )
    page.screenshot(
        path=str(ARTIFACTS / "control-room-full-pause-1280x800-full.png"), full_page=True
    )

    # Resume all: resumed everywhere, recorded.
    page.get_by_role("button", name="Resume all").click()
    page.get_by_test_id("confirm-actor").fill("ops-lead")
    page.get_by_role("button", name="Confirm resume all").click()
    expect(page.get_by_test_id("pause-level")).to_contain_text("running: no pause")
    assert _paused(fleet) == (False, False, False)
    pauses = [e["type"] for e in _history(fleet, "?limit=100") if e["type"].startswith("full_")]
    assert pauses[0] == "full_resume"
    expect(page.get_by_test_id("pause-last")).to_contain_text("resumed by ops-lead")

    # The emergency pause (L3: onboarding only) is not the full pause.
    page.get_by_role("button", name="Pause onboarding").click()
    expect(page.get_by_test_id("pause-level")).to_contain_text("L3 emergency pause")
    assert _paused(fleet) == (True, False, False)
    page.get_by_role("button", name="Resume onboarding").click()
    expect(page.get_by_test_id("pause-level")).to_contain_text("running: no pause")

    # "Show more": the record is read newest first in bounded pages.
    for i in range(30):
        status, _ = fleet["web"].post(
            f"/api/v1/system/gates/{GATE2}/signoff",
            {"criterion": "revenue_signal", "value": 6 + i / 10, "actor": f"cfo-{i}"},
        )
        assert status == 200
    entries = page.get_by_test_id("record-entry")
    more = page.get_by_test_id("record-more")
    expect(more).to_be_visible(timeout=20_000)
    expect(entries).to_have_count(25)
    expect(entries.first).to_contain_text("cfo-29")
    more.click()
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=record-entry]').length > 25", timeout=20_000
    )

    narrow = _page(browser, 390, 844)
    narrow.on("pageerror", lambda exc: errors.append(str(exc)))
    narrow.goto(fleet["web"].url + "/control-room")
    expect(narrow.get_by_test_id("stream-state")).to_have_text("live")
    expect(
        narrow.locator(f"li[data-gate={GATE2}] [data-criterion=revenue_signal]")
    ).to_contain_text("cfo-29")
    narrow.wait_for_function(
        "document.querySelectorAll('[data-testid=record-entry]').length > 0", timeout=20_000
    )
    width = narrow.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the narrow layout scrolls sideways ({width}px)"
    narrow.screenshot(path=str(ARTIFACTS / "control-room-rollout-390x844-full.png"), full_page=True)
    narrow.get_by_role("button", name="Pause all").click()
    expect(narrow.get_by_test_id("confirm-dialog")).to_be_visible()
    width = narrow.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the pause dialog scrolls sideways ({width}px)"
    narrow.screenshot(path=str(ARTIFACTS / "control-room-confirm-dialog-390x844.png"))
    narrow.get_by_role("button", name="Cancel").click()
    assert _paused(fleet) == (False, False, False)

    assert errors == []


def test_control_room_shows_a_sealed_gate_and_reopens_it(fleet: Fleet, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    gate1 = "gate-1-nov-1"
    fleet.start("reports")
    fleet.start("web", env=FAST_RECORD)
    # Gate 1 sealed two hours ago (its period is two hours of GO): what the recorder would have
    # stored, written over any version it holds. Its live verdict (no learners: HOLD) regresses.
    now = int(time.time() * 1000)
    sealed = {
        "verdict": "GO",
        "passing": True,
        "since": now - 4 * 3600_000,
        "last": now,
        "sealed_at": now - 2 * 3600_000,
        "regressed": False,
        "v": 1_000_000,
    }
    client = fleet.redis()
    try:
        # The Phase 3 gate comes first in the order: sealed too, so gate 2 becomes the active one.
        for gate in ("phase-3-coach", gate1):
            client.hset(Keys(fleet.prefix).gates_state, gate, json.dumps(sealed))
    finally:
        client.close()

    page = _page(browser, 1280, 800)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(fleet["web"].url + "/control-room")
    expect(page.get_by_test_id("stream-state")).to_have_text("live")
    badge = page.locator(f"li[data-gate={gate1}] [data-testid=gate-sealed]")
    expect(badge).to_have_text("sealed · regressed")
    alert = page.get_by_test_id("gate-record-alert").filter(has_text=gate1)
    expect(alert).to_contain_text("re-open it")
    expect(page.get_by_test_id("active-gate")).to_have_text("gate-2-nov-2")
    expect(page.get_by_test_id("escalation")).to_have_text("escalation: red")

    # Re-open: asked to confirm with an actor, recorded, judged again from now.
    page.get_by_test_id("reopen-gate").select_option(gate1)
    page.get_by_role("button", name="Re-open…").click()
    expect(page.get_by_test_id("confirm-dialog")).to_contain_text(f"Re-open {gate1}?")
    page.get_by_test_id("confirm-actor").fill("vp-eng")
    page.get_by_test_id("confirm-note").fill("regressed after the canary")
    page.get_by_role("button", name="Confirm re-open").click()
    expect(page.locator(f"li[data-gate={gate1}] [data-testid=gate-reopened]")).to_be_visible()
    expect(badge).to_have_count(0)
    expect(page.get_by_test_id("active-gate")).to_have_text(gate1)
    # Only the Phase 3 gate is still sealed: gate 1 left the re-open choices.
    expect(page.get_by_test_id("reopen-gate").locator(f"option[value={gate1}]")).to_have_count(0)
    expect(page.locator("[data-testid=record-entry][data-type=reopened]")).to_contain_text(
        f"{gate1}: re-opened by vp-eng — regressed after the canary"
    )
    reopened = [e for e in _history(fleet, f"?gate={gate1}") if e["type"] == "reopened"]
    assert len(reopened) == 1 and reopened[0]["actor"] == "vp-eng"
    _, gates = fleet["web"].get("/api/v1/system/gates")
    by_id = {g["id"]: g for g in gates["gates"]}
    assert by_id[gate1]["record"]["sealed"] is False
    assert gates["active_gate"] == gate1
    assert errors == []


def test_control_room_signoff_asks_for_the_token_and_retries(fleet: Fleet, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    fleet.start("web", env={"TOOLOO_API_TOKEN": "control-room-token"})
    page = _page(browser, 1280, 800)
    page.goto(fleet["web"].url + "/control-room")
    expect(page.get_by_test_id("stream-state")).to_have_text("live")

    page.get_by_test_id("signoff-gate").select_option(GATE2)
    page.get_by_test_id("signoff-criterion").select_option("revenue_signal")
    page.get_by_test_id("signoff-value").fill("6")
    page.get_by_test_id("signoff-actor").fill("cfo")
    page.get_by_role("button", name="Record sign-off").click()
    expect(page.get_by_test_id("message")).to_contain_text("401")
    assert [e for e in _history(fleet, "?limit=1000") if e["type"] == "signoff"] == []
    page.get_by_label("API token", exact=True).fill("control-room-token")
    page.get_by_role("button", name="Save token").click()
    # The refused sign-off is sent again with the token, once, and recorded.
    expect(page.get_by_test_id("signoff-result")).to_contain_text("revenue_signal = 6 by cfo")
    expect(page.get_by_test_id("signoff-error")).to_be_hidden()
    signoffs = [e for e in _history(fleet, "?limit=1000") if e["type"] == "signoff"]
    assert len(signoffs) == 1 and signoffs[0]["actor"] == "cfo"
