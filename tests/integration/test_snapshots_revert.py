"""Controller snapshots and the revert (rollback level 2) on real processes: a snapshot holds the
coach's settings and running state, the scale hash and the ramp switch; a throttle takes one
first by itself; the revert puts every part back (the coach through its own API) and is
recorded with its actor. Bad input (unknown snapshot, no actor) records nothing."""

from __future__ import annotations

import pytest

from harness.fleet import Fleet

pytestmark = pytest.mark.integration

COACH = "/api/v1/auto-coach"


def _reverts(web) -> list[dict]:
    history = web.get("/api/v1/system/gates/history?limit=100")[1]["history"]
    return [h for h in history if h["type"] == "revert"]


def test_snapshot_then_revert_puts_the_controller_settings_back(fleet: Fleet) -> None:
    fleet.start("training", "coach", "web")
    web = fleet["web"]
    web.post("/api/v1/system/scale", {"learners": 3, "actor": "ops"})
    web.post(f"{COACH}/start")
    original = web.get(f"{COACH}/settings")[1]["settings"]

    status, body = web.post("/api/v1/system/snapshots", {"actor": "ops", "note": "before ramp"})
    assert status == 200
    first = body["snapshot"]
    assert first["coach"]["settings"] == original and first["coach"]["active"] is True
    assert first["scale"] == {"target": 3, "hold": False, "paused": False}
    assert first["actor"] == "ops" and first["reason"] == "manual"

    # Change everything the snapshot holds; the throttle records a snapshot by itself first.
    status, _ = web.post(
        f"{COACH}/settings", {"maxRoundsPerCycle": 9, "fastLane": {"weight": 5, "enabled": False}}
    )
    assert status == 200
    web.post(f"{COACH}/stop")
    web.post("/api/v1/system/scale", {"learners": 1, "hold": True, "actor": "ops-throttle"})
    listed = web.get("/api/v1/system/snapshots")[1]["snapshots"]
    assert [s["reason"] for s in listed] == ["before scale hold", "manual"]
    assert listed[0]["coach"]["active"] is False
    assert listed[0]["coach"]["settings"]["maxRoundsPerCycle"] == 9

    status, body = web.post(
        "/api/v1/system/revert", {"snapshot_id": first["id"], "actor": "ops-lead", "note": "undo"}
    )
    assert status == 200, body
    assert web.get(f"{COACH}/settings")[1]["settings"] == original
    assert web.get(f"{COACH}/status")[1]["status"]["active"] is True
    scale = web.get("/api/v1/system/scale")[1]["scale"]
    assert (scale["target"], scale["hold"], scale["paused"]) == (3, False, False)
    (entry,) = _reverts(web)
    assert entry["actor"] == "ops-lead" and entry["rollback_level"] == 2
    assert entry["snapshot"] == first["id"]
    # The revert recorded the settings it replaced, so it can be undone in turn.
    listed = web.get("/api/v1/system/snapshots?limit=1")[1]["snapshots"]
    assert listed[0]["id"] == entry["before"] and listed[0]["reason"] == "revert"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"snapshot_id": "snap-1-abcdef", "actor": "ops"}, 404),  # well-formed, unknown
        ({"snapshot_id": "snap-1-abcdef"}, 422),
        ({"snapshot_id": "snap-1-abcdef", "actor": " "}, 422),
        ({"snapshot_id": "../x", "actor": "ops"}, 422),
        ({"actor": "ops"}, 422),
    ],
)
def test_bad_revert_records_nothing(fleet: Fleet, body: dict, expected: int) -> None:
    fleet.start("web")
    web = fleet["web"]
    web.post("/api/v1/system/scale", {"learners": 4})
    status, answer = web.post("/api/v1/system/revert", body)
    assert status == expected
    assert answer["ok"] is False
    assert _reverts(web) == []
    assert web.get("/api/v1/system/snapshots")[1]["snapshots"] == []
    assert web.get("/api/v1/system/scale")[1]["scale"]["target"] == 4
    status, answer = web.post("/api/v1/system/snapshots", {"note": "no actor"})
    assert status == 422
    assert web.get("/api/v1/system/snapshots")[1]["count"] == 0
