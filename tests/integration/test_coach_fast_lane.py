"""The fast lane on real training and coach processes: the pin API (pinned and automatic members
told apart, bounded, unknown learners 404, refused calls changing nothing, on one Redis and on a
Redis Cluster), learners close to readiness entering on their own and leaving when ready, a
partial update, and weight 2 giving a fast-lane learner about twice the rounds of a normal one
under contention, measured from the training store."""

from __future__ import annotations

from typing import Any

import pytest

from harness.polling import wait_for

pytestmark = [pytest.mark.integration]

COACH = "/api/v1/auto-coach"


def create_learners(fleet, ids: list[str]) -> None:
    for learner in ids:
        code, body = fleet["training"].post("/api/v1/learners", {"id": learner, "active": True})
        assert code == 201, body


def lane(fleet) -> dict[str, Any]:
    code, body = fleet["coach"].get(f"{COACH}/fast-lane")
    assert code == 200, body
    return body


def post_lane(fleet, change: Any) -> tuple[int, dict[str, Any]]:
    code, body = fleet["coach"].post(f"{COACH}/fast-lane", change)
    return code, body


def rounds_by_learner(fleet) -> dict[str, int]:
    """Every learner's committed rounds, from training's paged learner list."""
    found: dict[str, int] = {}
    cursor = 0
    for _ in range(100):  # bounded: 100 pages of 500
        code, body = fleet["training"].get(f"/api/v1/learners?limit=500&cursor={cursor}")
        assert code == 200, body
        rows = body["learners"]
        found.update((row["id"], row["rounds"]) for row in rows)
        if not body.get("next_cursor") or not rows:
            return found
        cursor = body["next_cursor"]
    raise AssertionError("more pages than expected")


@pytest.mark.backends("single", "cluster")
async def test_pins_are_told_apart_bounded_and_refused_calls_change_nothing(fleet, redis, keys):
    fleet.start("training", "coach")
    create_learners(fleet, ["a", "b", "c", "d"])
    code, body = post_lane(
        fleet, {"enable": False, "intervalMs": 900, "maxPinned": 3, "learners": ["a"]}
    )
    assert code == 200, body
    code, body = post_lane(fleet, {"learners": {"add": ["b"], "exclude": ["c"]}})
    assert code == 200, body
    members = body["members"]
    assert (members["pinned"], members["excluded"], members["automatic"]) == (["a", "b"], ["c"], [])
    assert body["fastLane"]["pinned"] == 2 and body["fastLane"]["excluded"] == 1
    assert body["fastLane"]["learners"] == 2 and body["fastLane"]["automatic"] == 0
    # The pins live in the learners' shards (their hash tags: one Cluster slot each).
    assert await redis.sismember(keys.coach_fastlane(keys.shard_of("b")), "b")
    assert await redis.sismember(keys.coach_fastlane_out(keys.shard_of("c")), "c")

    # A partial update: only the weight changes (the original reset enable and intervalMs).
    code, body = post_lane(fleet, {"weight": 3})
    assert code == 200, body
    fast = body["fastLane"]
    assert (fast["enabled"], fast["weight"], fast["intervalMs"]) == (False, 3, 900)

    before = lane(fleet)
    settings_before = fleet["coach"].get(f"{COACH}/settings")[1]["settings"]
    events_before = await redis.xlen(keys.stream_system)
    refused = [
        ({"weight": 4, "learners": ["d", "ghost"]}, 404, "learner_not_found"),
        ({"weight": 4, "learners": {"exclude": ["ghost"]}}, 404, "learner_not_found"),
        ({"weight": 4, "learners": ["d", "a", "b"], "maxPinned": 3}, 409, "fast_lane_full"),
        ({"learners": {"add": ["d"], "exclude": ["d"]}}, 422, None),
        ({"learners": {"add": ["bad id!"]}}, 422, None),
        ({"learners": {"add": ["x"] * 1001}}, 422, None),
        ({"windowS": 0}, 422, None),
        ({"autoMargin": -1}, 422, None),
        ({"auto": "yes"}, 422, None),
    ]
    for change, status, error in refused:
        code, body = post_lane(fleet, change)
        assert code == status, (change, code, body)
        assert body["ok"] is False and (error is None or body["error"]["code"] == error), body
    assert lane(fleet) == before
    assert fleet["coach"].get(f"{COACH}/settings")[1]["settings"] == settings_before
    assert await redis.xlen(keys.stream_system) == events_before

    # Moving a pin and dropping one fit the bound; dropped pins leave no trace.
    code, body = post_lane(fleet, {"learners": {"add": ["d", "c"], "remove": ["a", "b"]}})
    assert code == 200, body
    assert (body["members"]["pinned"], body["members"]["excluded"]) == (["c", "d"], [])
    code, body = post_lane(fleet, {"learners": {"remove": ["c", "d", "ghost"]}})
    assert code == 200 and body["fastLane"]["learners"] == 0, body


@pytest.mark.backends("single")
async def test_learners_close_to_readiness_enter_on_their_own_and_leave_when_ready(fleet):
    fleet.start("training", "coach")
    learners = [f"r{i}" for i in range(4)]
    create_learners(fleet, learners)
    # A wide margin (close = an average of 35 and more) so every learner spends several ticks
    # close to readiness; nobody is pinned.
    code, body = post_lane(fleet, {"intervalMs": 100, "autoMargin": 40})
    assert code == 200, body
    assert fleet["coach"].post(f"{COACH}/start")[0] == 200

    seen: dict[str, dict[str, Any]] = {}

    def everyone_ready() -> bool:
        for member in lane(fleet)["members"]["automatic"]:
            seen.setdefault(member["learner"], member)
        _, body = fleet["coach"].get(f"{COACH}/status")
        return body["status"]["learnersReady"] == len(learners)

    wait_for(everyone_ready, timeout_s=90, every_s=0.1)
    assert set(seen) == set(learners)  # each entered while close
    for member in seen.values():
        assert member["until"] - member["since"] == 600_000  # the default window
    # Ready learners left the lane.
    final = lane(fleet)
    assert final["members"]["automatic"] == [] and final["fastLane"]["automatic"] == 0


@pytest.mark.backends("single")
async def test_weight_two_gives_fast_lane_learners_twice_the_rounds_under_contention(fleet):
    fleet.start("training", "coach")
    normal = [f"n{i:02d}" for i in range(40)]
    fast = [f"f{i}" for i in range(8)]
    create_learners(fleet, normal + fast)
    # Nobody becomes ready (an average of 100 is out of reach), so the population stays in the
    # queue; 2 x 4 = 8 learners a tick against 48: contention. The automatic rule is off, so the
    # lane is exactly the 8 pinned learners. Aggressive rounds stay on: learners cross the
    # threshold at different times, and the weight must hold across that.
    code, body = fleet["coach"].post(f"{COACH}/settings", {"minAvgMastery": 100, "maxBelow80": 0})
    assert code == 200, body
    change = {
        "enable": True,
        "weight": 2,
        "intervalMs": 50,
        "microBatchesPerTick": 2,
        "batchSize": 4,
        "auto": False,
        "learners": fast,
    }
    code, body = post_lane(fleet, change)
    assert code == 200, body
    assert fleet["coach"].post(f"{COACH}/start")[0] == 200

    # The window starts once the loop runs; it ends when normal learners have had 120 rounds each
    # on average (15 or more picks each), enough for the ratio to settle.
    wait_for(lambda: sum(rounds_by_learner(fleet).values()) > 0, timeout_s=30)
    start = rounds_by_learner(fleet)

    def window_done() -> dict[str, int] | None:
        now = rounds_by_learner(fleet)
        per_normal = sum(now[x] - start[x] for x in normal) / len(normal)
        return now if per_normal >= 120 else None

    end = wait_for(window_done, timeout_s=240, every_s=1.0)
    assert fleet["coach"].post(f"{COACH}/stop")[0] == 200
    per_fast = sum(end[x] - start[x] for x in fast) / len(fast)
    per_normal = sum(end[x] - start[x] for x in normal) / len(normal)
    ratio = per_fast / per_normal
    print(f"rounds per learner: fast {per_fast:.1f}, normal {per_normal:.1f}, ratio {ratio:.2f}")
    # 1.93-1.97 in repeated runs; a pass advanced per pick rather than per round (the rule
    # before) measured 1.64-1.79 here: fast learners pass the aggressive threshold first and
    # then get half the rounds a pick.
    assert 1.8 <= ratio <= 2.2, (per_fast, per_normal)
    # Nobody in either lane is starved.
    assert min(end[x] - start[x] for x in normal) > 0
