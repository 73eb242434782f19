"""A learner's Redis memory at steady state: all of its keys (state, history, meta, meta log),
by `MEMORY USAGE`, for learners that ran 200 rounds through the HTTP round path and had meta
run, with the default history length (100). A size, not a time: deterministic for a given
encoding, so the assertion holds on any machine. loadtests/bench_memory.py prints the figures.

The history alone (100 rounds) fits in 2 KiB; all of a learner's keys take ~4.3 KB (from ~23.9 KB
before the compact encodings: state ~1.6 KB, history ~1.6 KB, meta ~0.4 KB, log ~0.7 KB), which
the bound below holds with a margin."""

from __future__ import annotations

import pytest

from harness.fleet import Fleet
from loadtests.bench_memory import drive, learner_memory
from shared.keys import Keys

pytestmark = [pytest.mark.integration, pytest.mark.backends("single")]

ROUNDS = 200
HISTORY_BYTES = 2048
TOTAL_BYTES = 5 * 1024


def test_memory_per_learner_at_steady_state(fleet: Fleet, redis_sync) -> None:
    fleet.start("training", "meta")
    learners = ["mem-a", "mem-b", "mem-c"]
    for learner in learners:
        drive(fleet, learner, ROUNDS)
    keys = Keys(fleet.prefix)
    for learner in learners:
        status, body = fleet["training"].get(
            f"/api/v1/training/history?learner={learner}&limit=1000"
        )
        assert status == 200 and body["count"] == 100  # the default history length, kept
        assert body["history"][0]["n"] == ROUNDS and body["history"][-1]["n"] == ROUNDS - 99
        status, report = fleet["meta"].get(f"/api/v4/meta-learning/report?learner={learner}")
        assert status == 200 and report["report"]["completedPhases"] == 4
        used = learner_memory(redis_sync, keys, learner)
        assert all(used.values()), used  # every key exists and is measured
        assert used["history"] <= HISTORY_BYTES, used
        assert sum(used.values()) <= TOTAL_BYTES, used
