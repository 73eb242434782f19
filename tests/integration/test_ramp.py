"""The ramp controller on a real fleet with short stages (seconds): switched on, it starts at the
first stage and advances only after the active gate's readings held green for the stage's hold;
a critical service going down turns them red and the ramp applies level 1 (a held target one
stage back, learners deactivated); every action is recorded with the actor `ramp`. Switched off,
it records that; bad input (stages not increasing, no actor) records nothing."""

from __future__ import annotations

import pytest

from harness.fleet import Fleet
from harness.polling import wait_for

pytestmark = pytest.mark.integration

ENV = {"TOOLOO_RAMP_CHECK_S": "0.5", "TRAINING_ONBOARDING_TICK": "0.05"}


def _ramp(web) -> dict:
    return web.get("/api/v1/system/ramp")[1]["ramp"]


def _entries(web) -> list[dict]:
    history = web.get("/api/v1/system/gates/history?limit=200")[1]["history"]
    return [h for h in reversed(history) if h["type"].startswith("ramp")]


def test_the_ramp_advances_on_green_and_throttles_on_red(fleet: Fleet) -> None:
    fleet.start("training", "meta", "coach", "reports", "web", env=ENV)
    web = fleet["web"]
    web.post("/api/v1/auto-coach/start")
    assert _ramp(web)["enabled"] is False  # off by default

    status, body = web.post(
        "/api/v1/system/ramp",
        {"enabled": True, "actor": "ops-anna", "stages": [2, 3, 5], "hold_s": [2]},
    )
    assert status == 200 and body["ramp"]["enabled"] is True
    assert body["ramp"]["stages"] == [2, 3, 5] and body["ramp"]["holds_s"] == [2.0, 2.0, 2.0]

    wait_for(lambda: _ramp(web)["stage"] == 2, "the ramp to reach its last stage", 120)
    ramp = _ramp(web)
    assert ramp["stage_target"] == 5 and ramp["since"] and ramp["next_check"]
    assert ramp["last_action"]["type"] == "ramp_advance"
    assert web.get("/api/v1/system/scale")[1]["scale"]["target"] == 5
    actions = [(e["type"], e.get("target"), e["actor"]) for e in _entries(web)]
    assert actions == [
        ("ramp_enabled", None, "ops-anna"),
        ("ramp_start", 2, "ramp"),
        ("ramp_advance", 3, "ramp"),
        ("ramp_advance", 5, "ramp"),
    ]
    # Each advance came after the stage's hold of green readings.
    for e in _entries(web):
        if e["type"] == "ramp_advance":
            assert e["reading"] == "green"

    # A critical service down (and the gateway's 502s for it): red, the ramp throttles.
    fleet.stop("meta")
    for _ in range(60):
        web.get("/api/v4/meta-learning/status")
    wait_for(lambda: _ramp(web)["throttled"], "the ramp to throttle", 120)
    throttle = next(e for e in _entries(web) if e["type"] == "ramp_throttle")
    assert throttle["actor"] == "ramp" and throttle["rollback_level"] == 1
    assert throttle["reading"] == "red" and throttle["target"] == 3 and throttle["hold"] is True
    scale = web.get("/api/v1/system/scale")[1]["scale"]
    assert scale["hold"] is True and scale["target"] in (2, 3)  # 2: a later throttle, one more back
    wait_for(
        lambda: web.get("/api/v1/system/scale")[1]["scale"]["active"] <= 3,
        "learners beyond the held target to be deactivated",
    )
    reasons = [s["reason"] for s in web.get("/api/v1/system/snapshots")[1]["snapshots"]]
    assert "before ramp throttle" in reasons

    status, body = web.post("/api/v1/system/ramp", {"enabled": False, "actor": "ops-anna"})
    assert status == 200 and body["ramp"]["enabled"] is False
    assert _entries(web)[-1]["type"] == "ramp_disabled"


@pytest.mark.parametrize(
    "body",
    [
        {"enabled": True, "actor": "ops", "stages": [5, 5, 10]},
        {"enabled": True, "actor": "ops", "stages": [10, 5]},
        {"enabled": True, "actor": "ops", "stages": [0, 5]},
        {"enabled": True, "actor": "ops", "stages": [5, 10], "hold_s": [1, 2, 3]},
        {"enabled": True, "actor": "ops", "hold_s": [0]},
        {"enabled": True},
        {"enabled": True, "actor": " "},
        {"actor": "ops"},
    ],
)
def test_bad_ramp_input_records_nothing(fleet: Fleet, body: dict) -> None:
    fleet.start("web")
    web = fleet["web"]
    status, answer = web.post("/api/v1/system/ramp", body)
    assert status == 422 and answer["ok"] is False
    assert _ramp(web)["enabled"] is False
    assert _entries(web) == []
