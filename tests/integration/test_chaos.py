"""Chaos, short: the fleet under honcho, a round client writing through the gateway, and kill -9
of every service once. After each kill the fleet is armed again with a new process for the
service and rounds are acknowledged again; at the end every acknowledged round is in its
learner's history exactly once, reports' total equals the round counter, and SIGTERM to honcho
leaves nothing running. The long version with Locust and the Redis crash is
`python -m loadtests.chaos` (figures and targets live there, not here).

One test on purpose: starting the fleet is the slowest part, so the kills share one fleet.
"""

from __future__ import annotations

import time

import pytest

from harness.honcho import ArmedFleetFactory
from harness.processes import pid_alive
from loadtests.chaos import (
    HISTORY_LIMIT,
    SERVICES,
    RoundWriter,
    check_rounds,
    kill_and_recover,
    quiesce,
)

pytestmark = pytest.mark.integration


def test_kill_each_service_under_writes_loses_and_doubles_nothing(
    honcho_fleet: ArmedFleetFactory,
) -> None:
    with honcho_fleet({"TRAINING_HISTORY_LIMIT": str(HISTORY_LIMIT)}) as fleet:
        writer: RoundWriter | None = None
        try:
            writer = RoundWriter(
                fleet.url("web"), [f"chaos-{i}" for i in range(8)], concurrency=2, per_worker_rps=20
            )
            writer.start_learners()
            writer.start()
            fleet.wait_for(lambda: len(writer.acked) >= 10, 30, "first acknowledged rounds")

            for name in SERVICES:
                fault = kill_and_recover(fleet, name, writer)
                assert fault["rounds_again_s"] is not None, fault
                process = fleet.processes()[name]
                assert process["pid"] != fault["pid"] and process["restarts"] >= 1, process
            assert not fleet.system_events("process_failed")

            writer.stop()
            quiesce(fleet)
            rounds = check_rounds(fleet, writer.acked)
            assert rounds["acknowledged"] > 0
            assert rounds["missing"] == 0, rounds
            assert rounds["duplicate_round_ids"] == 0 and rounds["acknowledged_twice"] == 0, rounds
            assert rounds["wrong_learner_round"] == 0, rounds
            assert rounds["histories_incomplete"] == [], rounds
            assert rounds["reports_total"] == rounds["rounds_seq"], rounds

            fleet.record_pids()
            pids = set(fleet.pids_seen)
            fleet.stop(timeout_s=30)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
                time.sleep(0.05)
            assert [p for p in pids if pid_alive(p)] == [], fleet.logs()
        finally:
            if writer is not None:
                writer.stop()
