"""The throttle (rollback level 1) on real processes: `POST /api/v1/system/scale` with `hold`
answers at once with the counts, training's onboarding task deactivates the newest learners
beyond the target in bounded ticks, rounds for them are refused with 409 `learner_inactive`, the
listing marks them, and a higher target brings them back oldest first; each change is recorded
with its actor (system event and decision record). Bad input records nothing."""

from __future__ import annotations

import pytest
import redis as sync_redis

from harness.fleet import Fleet
from harness.polling import wait_for
from shared.keys import Keys

pytestmark = pytest.mark.integration

# Small batches, so the throttle takes several ticks (bounded batches), not one.
ENV = {"TRAINING_ONBOARDING_BATCH": "7", "TRAINING_ONBOARDING_TICK": "0.05"}


def _scale(fleet: Fleet) -> dict:
    return fleet["web"].get("/api/v1/system/scale")[1]["scale"]


def _listing(fleet: Fleet) -> list[dict]:
    status, body = fleet["web"].get("/api/v1/learners?limit=500")
    assert status == 200
    return body["learners"]


def test_scale_hold_throttles_and_the_target_rising_reactivates(fleet: Fleet) -> None:
    fleet.start("training", "web", env=ENV)
    web = fleet["web"]
    base = _scale(fleet)["learners"]  # training seeds `default`
    status, body = web.post("/api/v1/system/scale", {"learners": base + 40})
    assert status == 200
    wait_for(lambda: _scale(fleet)["learners"] == base + 40, "onboarding to the target")
    order = [x["id"] for x in _listing(fleet)]  # the fleet's creation order
    assert len(order) == base + 40

    status, body = web.post(
        "/api/v1/system/scale", {"learners": 12, "hold": True, "actor": "ops-anna"}
    )
    assert status == 200
    # The request only records the target: it answers with the counts as they are now.
    assert body["scale"]["target"] == 12 and body["scale"]["hold"] is True
    assert set(body["scale"]) >= {"active", "inactive", "learners"}
    wait_for(lambda: _scale(fleet)["active"] == 12, "the throttle to reach 12 active")
    scale = _scale(fleet)
    assert (scale["learners"], scale["inactive"]) == (base + 40, base + 28)
    rows = _listing(fleet)
    assert [x["id"] for x in rows if x["inactive"]] == order[12:]  # the newest, kept, listed

    newest = order[-1]
    status, body = web.post("/api/v1/training/round", {"learner": newest})
    assert status == 409 and body["error"]["code"] == "learner_inactive"
    status, body = web.post("/api/v1/training/round", {"learner": order[0]})
    assert status == 200

    # The target rising brings the oldest inactive back first (last in, first out).
    web.post("/api/v1/system/scale", {"learners": 20, "hold": True, "actor": "ops-anna"})
    wait_for(lambda: _scale(fleet)["active"] == 20, "reactivation to 20 active")
    assert [x["id"] for x in _listing(fleet) if x["inactive"]] == order[20:]
    # Without hold a lower target deactivates nobody (it only stops onboarding).
    web.post("/api/v1/system/scale", {"learners": 5, "hold": False, "actor": "ops-anna"})
    status, body = web.post("/api/v1/system/scale", {"learners": base + 40, "actor": "ops-bo"})
    assert body["scale"]["active"] == 20
    wait_for(lambda: _scale(fleet)["inactive"] == 0, "every learner back")
    status, body = web.post("/api/v1/training/round", {"learner": newest})
    assert status == 200

    # Recorded with its actor: the system stream and the decision record.
    client = sync_redis.Redis.from_url(fleet.env["REDIS_URL"], decode_responses=True)
    try:
        events = client.xrange(Keys(fleet.env["TOOLOO_REDIS_PREFIX"]).stream_system)
    finally:
        client.close()
    changes = [e for _, e in events if e["type"] == "settings_changed" and e["setting"] == "scale"]
    assert [(c["target"], c["hold"], c["actor"]) for c in changes[1:]] == [
        ("12", "1", "ops-anna"),
        ("20", "1", "ops-anna"),
        ("5", "0", "ops-anna"),
        (str(base + 40), "0", "ops-bo"),
    ]
    history = web.get("/api/v1/system/gates/history?limit=50")[1]["history"]
    entries = [h for h in history if h["type"] in ("throttle", "scale")]
    # Newest first; only the change that brought the active population down is level 1.
    assert [(h["type"], h["target"], h["actor"], h["rollback_level"]) for h in entries] == [
        ("scale", base + 40, "ops-bo", None),
        ("scale", 5, "ops-anna", None),
        ("scale", 20, "ops-anna", None),
        ("throttle", 12, "ops-anna", 1),
        ("scale", base + 40, "unspecified", None),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"learners": -1, "hold": True, "actor": "x"},
        {"learners": 5, "hold": True, "actor": ""},
        {"learners": 5, "hold": True, "actor": "   "},
        {"learners": 5, "hold": "true"},
    ],
)
def test_bad_scale_input_records_nothing(fleet: Fleet, body: dict) -> None:
    fleet.start("web")
    web = fleet["web"]
    status, answer = web.post("/api/v1/system/scale", body)
    assert status == 422 and answer["ok"] is False
    assert web.get("/api/v1/system/scale")[1]["scale"]["target"] is None
    history = web.get("/api/v1/system/gates/history")[1]["history"]
    assert [h for h in history if h["type"] in ("scale", "throttle")] == []


def test_a_growth_beyond_the_memory_budget_is_refused_and_a_throttle_never(fleet: Fleet) -> None:
    fleet.start("training", "web")
    web = fleet["web"]
    base = _scale(fleet)["learners"]
    web.post("/api/v1/system/scale", {"learners": base + 5})
    wait_for(lambda: _scale(fleet)["learners"] == base + 5, "onboarding to the target")
    client = sync_redis.Redis.from_url(fleet.env["REDIS_URL"], decode_responses=True)
    old = client.config_get("maxmemory")["maxmemory"]
    try:
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + 2_000_000)  # about 2 MB of room
        status, body = web.post("/api/v1/system/scale", {"learners": 1_000_000, "actor": "ops"})
        assert status == 409 and body["error"]["code"] == "memory_budget"
        details = body["error"]["details"]
        assert details["bytes_needed"] > details["bytes_available"] > 0
        assert details["bytes_per_learner"] > 0 and 0 < details["learners_sampled"] <= base + 5
        scale = _scale(fleet)
        assert scale["target"] == base + 5  # nothing recorded
        # A throttle, and a growth that fits, are taken.
        status, body = web.post("/api/v1/system/scale", {"learners": 2, "hold": True})
        assert status == 200 and body["scale"]["target"] == 2
        status, body = web.post("/api/v1/system/scale", {"learners": base + 10})
        assert status == 200
    finally:
        client.config_set("maxmemory", old)
        client.close()


def test_throttle_snapshot_revert_and_ramp_switch_on_the_cluster(redis_cluster, tmp_path) -> None:
    """Every step on a real Redis Cluster: the activation scripts (one shard's slot each), the
    scale budget's MEMORY USAGE reads, the `{system}` MULTIs of the revert and the ramp switch."""
    import uuid

    fleet = Fleet(redis_cluster.url, f"t{uuid.uuid4().hex[:8]}", tmp_path / "logs")
    try:
        fleet.start("training", "web", env=ENV)
        web = fleet["web"]
        base = _scale(fleet)["learners"]
        status, body = web.post("/api/v1/system/scale", {"learners": base + 20, "actor": "ops"})
        assert status == 200, body
        wait_for(lambda: _scale(fleet)["learners"] == base + 20, "onboarding on the cluster")
        status, snap = web.post("/api/v1/system/snapshots", {"actor": "ops"})
        assert status == 200
        web.post("/api/v1/system/scale", {"learners": 8, "hold": True, "actor": "ops"})
        wait_for(lambda: _scale(fleet)["active"] == 8, "the throttle on the cluster")
        order = [x["id"] for x in _listing(fleet)]
        assert [x["id"] for x in _listing(fleet) if x["inactive"]] == order[8:]
        status, body = web.post(
            "/api/v1/system/revert", {"snapshot_id": snap["snapshot"]["id"], "actor": "ops"}
        )
        assert status == 200, body  # the coach is not running: its part is skipped, said so
        assert body["reverted"]["parts"]["coach"]["skipped"]
        wait_for(lambda: _scale(fleet)["inactive"] == 0, "the revert's target reactivating all")
        for enabled in (True, False):
            status, body = web.post("/api/v1/system/ramp", {"enabled": enabled, "actor": "ops"})
            assert status == 200 and body["ramp"]["enabled"] is enabled
    finally:
        fleet.stop_all()
