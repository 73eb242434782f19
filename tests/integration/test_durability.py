"""Durability: what the fleet acknowledged survives a crash of Redis and a restart of the whole
fleet.

- kill -9 of the embedded redis-server while rounds are written: its wrapper restarts it from
  the append-only file (appendfsync everysec), the services reconnect, and every round
  acknowledged more than ~1 s before the crash is still there (in practice none is lost: a
  killed process's writes are already in the kernel);
- SIGTERM to honcho and `honcho start` again on the same data directory: every learner's stored
  state and API view is what it was, the round counter continues, nothing of the old fleet is
  left running, and the coach coaches again (no lease of the old instance blocks it).

Both share one fleet (module fixture), Redis first: the restart test then also proves that the
state written after the Redis crash persisted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from harness.honcho import ArmedFleetFactory, HonchoFleet
from loadtests.chaos import (
    CRASH_WINDOW_S,
    HISTORY_LIMIT,
    RoundWriter,
    check_rounds,
    coaching_resumes,
    full_restart,
    kill_redis,
    quiesce,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(honcho_fleet: ArmedFleetFactory) -> Iterator[HonchoFleet]:
    with honcho_fleet({"TRAINING_HISTORY_LIMIT": str(HISTORY_LIMIT)}) as fleet:
        yield fleet


def test_acknowledged_rounds_survive_a_redis_kill(fleet: HonchoFleet) -> None:
    writer = RoundWriter(
        fleet.url("web"), [f"dur-{i}" for i in range(6)], concurrency=2, per_worker_rps=25
    )
    writer.start_learners()
    writer.start()
    try:
        fleet.wait_for(lambda: len(writer.acked) >= 20, 30, "acknowledged rounds")
        fault = kill_redis(fleet, writer)
        assert fault["new_pid"] != fault["pid"]
        # Rounds are acknowledged again after the crash, by the same fleet (no restart of it).
        assert fault["rounds_again_s"] is not None, fault
        seen = len(writer.acked)
        fleet.wait_for(lambda: len(writer.acked) > seen + 10, 30, "rounds after the crash")
    finally:
        writer.stop()
    assert not fleet.system_events("process_failed")

    quiesce(fleet)
    rounds = check_rounds(fleet, writer.acked, [fault["t_kill"]], CRASH_WINDOW_S)
    # Only rounds acknowledged within the last second before the kill may be missing.
    assert rounds["missing"] == 0, rounds
    assert rounds["duplicate_round_ids"] == 0 and rounds["acknowledged_twice"] == 0, rounds
    assert rounds["wrong_learner_round"] == 0, rounds
    assert rounds["reports_total"] == rounds["rounds_seq"], rounds
    print(f"missing within {CRASH_WINDOW_S} s before the kill: {rounds['missing_in_crash_window']}")


def test_state_survives_a_full_restart_and_the_coach_resumes(fleet: HonchoFleet) -> None:
    learners = ["restart-a", "restart-b"]
    for learner in learners:
        assert fleet.post("web", "/api/v1/training/start", {"learner": learner})[0] == 200
        for _ in range(3):
            assert fleet.post("web", "/api/v1/training/round", {"learner": learner})[0] == 200
    quiesce(fleet)  # the coach stopped, so the state before SIGTERM is final

    restart = full_restart(fleet)
    assert restart["pids_left"] == [], fleet.logs()
    stops = re.findall(r"(orchestrator|redis)\.1 stopped \(rc=(-?\d+)\)", fleet.logs(10_000))
    assert ("orchestrator", "0") in stops and ("redis", "0") in stops, stops
    states = restart["states"]
    assert states["ok"], states
    assert states["learners"] >= len(learners) and states["api_compared"] >= 1, states
    assert restart["rounds_seq_at_restart"] == restart["rounds_seq_before"]

    # The round counters continue where they were: the learner's next id is above every id it
    # had (ids increase per learner and are never reissued).
    status, before = fleet.get("training", f"/api/v1/training/history?learner={learners[0]}")
    assert status == 200 and before["history"], before
    status, body = fleet.post("web", "/api/v1/training/round", {"learner": learners[0]})
    assert status == 200, body
    assert body["result"]["round"] > max(h["round"] for h in before["history"])
    # The coach was stopped before the restart, and pre-arm respects a stored stop (it applies
    # its defaults only to a fleet never configured): still stopped until the operator starts it.
    status, body = fleet.get("coach", "/api/v1/auto-coach/status")
    assert status == 200 and body["status"]["active"] is False, body
    assert fleet.post("coach", "/api/v1/auto-coach/start")[0] == 200
    resumed = coaching_resumes(fleet)
    assert resumed["coach_rounds_again_s"] is not None
    # The new instance owns every shard (the only replica), none of the old one is left over.
    status, body = fleet.get("coach", "/api/v1/auto-coach/status")
    assert body["status"]["leader"] is True
    assert len(body["status"]["replica"]["ownedShards"]) == body["status"]["shards"]
