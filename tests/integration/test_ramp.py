"""The ramp controller on a real fleet with short stages (seconds): switched on, it starts at the
first stage and advances only after the active gate's readings held green for the stage's hold;
the coach stopped turns them red and the ramp applies level 1 (a held target one
stage back, learners deactivated); every action is recorded with the actor `ramp`. Switched off,
it records that; bad input (stages not increasing, no actor) records nothing."""

from __future__ import annotations

from typing import Any

import pytest

from harness.fleet import Fleet
from harness.honcho import ArmedFleetFactory, HonchoFleet
from harness.polling import wait_for

pytestmark = pytest.mark.integration

ENV = {"TOOLOO_RAMP_CHECK_S": "0.5", "TRAINING_ONBOARDING_TICK": "0.05"}


def _ramp(web) -> dict:
    return web.get("/api/v1/system/ramp")[1]["ramp"]


def _entries(web) -> list[dict]:
    history = web.get("/api/v1/system/gates/history?limit=200")[1]["history"]
    return [h for h in reversed(history) if h["type"].startswith("ramp")]


class _Web:
    """The honcho fleet's web service with the ServiceProcess-like get/post the helpers use."""

    def __init__(self, fleet: HonchoFleet) -> None:
        self.fleet = fleet

    def get(self, path: str) -> tuple[int, Any]:
        return self.fleet.get("web", path)

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return self.fleet.post("web", path, body if body is not None else {})


def test_the_ramp_advances_on_green_and_throttles_on_red(honcho_fleet: ArmedFleetFactory) -> None:
    with honcho_fleet(ENV) as fleet:
        fleet.wait_armed()
        web = _Web(fleet)
        # The active gate is the Phase 3 gate (coach integration): one real boost completes it.
        status, body = fleet.post("coach", "/api/v1/auto-coach/boost", {"rounds": 3})
        assert status == 200, body
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
        assert all(e["reading"] == "green" for e in _entries(web)[1:])

        # The coach stopped fails the active gate's `coach_active`: red, the ramp throttles.
        status, _ = fleet.post("coach", "/api/v1/auto-coach/stop", {})
        assert status == 200
        wait_for(lambda: _ramp(web)["throttled"], "the ramp to throttle", 120)
        throttle = next(e for e in _entries(web) if e["type"] == "ramp_throttle")
        assert throttle["actor"] == "ramp" and throttle["rollback_level"] == 1
        assert throttle["reading"] == "red" and "coach_active" in throttle["reason"]
        assert throttle["target"] == 3 and throttle["hold"] is True
        scale = web.get("/api/v1/system/scale")[1]["scale"]
        assert scale["hold"] is True and scale["target"] in (2, 3)  # 2: one more back later
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
