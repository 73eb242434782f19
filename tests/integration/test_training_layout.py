"""A training process refuses a Redis it must not write into: one initialised with another shard
count (TOOLOO_SHARDS changed between two starts), or one still holding the unsharded layout. It
exits non-zero with a message saying what to do, and writes nothing."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import redis as sync_redis

from harness.fleet import Fleet
from harness.processes import ROOT
from shared.keys import LegacyKeys
from shared.learner_state import LearnerState, encode

pytestmark = pytest.mark.integration


def everything(fleet: Fleet) -> dict[str, Any]:
    """Every key under the fleet's prefix with its serialized value."""
    r = sync_redis.Redis.from_url(fleet.redis_url)
    try:
        return {key: r.dump(key) for key in r.scan_iter(match=f"{fleet.prefix}:*", count=1000)}
    finally:
        r.close()


def refused(fleet: Fleet, env: dict[str, str]) -> str:
    """Start training, which must exit non-zero by itself; its log."""
    (proc,) = fleet.start("training", wait=False, env=env)
    assert proc.proc is not None
    code = proc.proc.wait(timeout=60)
    assert code != 0, proc.logs()
    return proc.logs(200)


def test_a_changed_shard_count_is_refused_and_nothing_is_written(fleet: Fleet) -> None:
    fleet.start("training", env={"TOOLOO_SHARDS": "16"})
    training = fleet["training"]
    assert training.post("/api/v1/training/start", {"learner": "s1"})[0] == 200
    assert training.post("/api/v1/training/round", {"learner": "s1"})[0] == 200
    training.stop()
    before = everything(fleet)
    logs = refused(fleet, {"TOOLOO_SHARDS": "8"})
    assert "TOOLOO_SHARDS=8" in logs and "initialised with 16 shards" in logs, logs
    assert everything(fleet) == before
    # The recorded count starts again, with every learner where it was.
    fleet.start("training", env={"TOOLOO_SHARDS": "16"})
    assert fleet["training"].get("/api/v1/learners/s1")[1]["learner"]["rounds"] == 1


def test_the_unsharded_layout_is_refused_until_migrated(fleet: Fleet) -> None:
    old = LegacyKeys(fleet.prefix)
    r = sync_redis.Redis.from_url(fleet.redis_url, decode_responses=True)
    state = LearnerState(id="old-1", seed=3, region="eu", created=1.0, active=True)
    # What the unsharded create script wrote for one learner.
    r.hset(old.learner_state("old-1"), mapping={"v": 1, "s": encode(state), "r": "0"})
    r.zadd(old.learners_index, {"old-1": 1})
    r.set(old.learners_seq, 1)
    r.hset(old.learners_regions, "eu", 1)
    r.set(old.rounds_seq, 42)
    before = everything(fleet)
    logs = refused(fleet, {})
    assert "tooloo-migrate" in logs and "unsharded key layout" in logs, logs
    assert everything(fleet) == before
    done = subprocess.run(
        [sys.executable, "-m", "shared.migrate_layout"],
        cwd=ROOT,
        env=fleet.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    fleet.start("training")
    training = fleet["training"]
    assert training.get("/api/v1/learners/old-1")[1]["learner"]["id"] == "old-1"
    status, body = training.post("/api/v1/training/round", {"learner": "old-1"})
    assert status == 200 and body["result"]["round"] > 42, body
    r.close()


def test_the_orchestrator_migrates_before_it_starts_the_services(fleet: Fleet) -> None:
    from harness.polling import wait_for
    from shared.keys import Keys

    old = LegacyKeys(fleet.prefix)
    r = sync_redis.Redis.from_url(fleet.redis_url, decode_responses=True)
    state = LearnerState(id="old-2", seed=5, region="us", created=1.0, active=True)
    r.hset(old.learner_state("old-2"), mapping={"v": 1, "s": encode(state), "r": "0"})
    r.zadd(old.learners_index, {"old-2": 1})
    r.hset(old.learners_regions, "us", 1)
    r.set(old.rounds_seq, 9)
    fleet.start("orchestrator", wait=False, env={"ORCHESTRATOR_SERVICES": "training"})

    def training_serves() -> bool:
        code, body = fleet.call("training", "GET", "/api/v1/learners/old-2", timeout=2.0)
        return code == 200 and body["learner"]["region"] == "us"

    wait_for(training_serves, "training up on the migrated layout", timeout_s=60)
    keys = Keys(fleet.prefix)
    assert r.hget(keys.fleet_layout, "version") == "2"
    assert not r.exists(*old.legacy_markers())
    assert r.get(keys.rounds_seq(0)) == "9"
    r.close()
