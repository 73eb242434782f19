"""No silent loss in the streams, with real processes: reports stopped while rounds are committed
in several shards, more than the (small) length cap would keep, the trimmer run on each shard's
stream, reports started again -> every round counted; and Redis at `maxmemory` -> a write endpoint answers 503 with the envelope
and reports' dashboard raises the alert."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from harness.fleet import Fleet
from harness.polling import wait_for
from harness.redis_server import RedisServer
from shared.keys import Keys
from shared.scripts import script_source

SMALL_CAP = {
    "TOOLOO_STREAM_CAP": "100",
    "TOOLOO_STREAM_TRIM_INTERVAL": "0.2",
    "TOOLOO_STREAM_RETENTION": "0",  # acknowledged entries may go at once
}
LEARNERS = [f"l{i}" for i in range(10)]


def reports_status(fleet: Fleet) -> dict[str, Any]:
    status, body = fleet["reports"].get("/api/v1/reports/status")
    assert status == 200, body
    return body["status"]


def commit_rounds(r: sync_redis.Redis, keys: Keys, learner: str, n: int) -> None:
    """n rounds of `learner` as the commit script leaves them: its shard's round counter moved
    on and one event per round on its shard's stream (no MAXLEN), in one MULTI (one slot)."""
    shard = keys.shard_of(learner)
    with r.pipeline(transaction=True) as pipe:
        pipe.incrby(keys.rounds_seq(shard), n)
        for i in range(n):
            pipe.xadd(keys.stream_rounds(shard), {"round": i, "learner": learner, "ms": 3})
        pipe.execute()


def test_reports_counts_every_round_committed_while_it_was_stopped(
    fleet: Fleet, keys: Keys
) -> None:
    r = sync_redis.Redis.from_url(fleet.env["REDIS_URL"], decode_responses=True)
    fleet.start("reports", env=SMALL_CAP)  # creates its groups on every shard's streams
    wait_for(lambda: reports_status(fleet)["streams"]["rounds"]["group"], what="groups")
    fleet.stop("reports")

    for _ in range(10):  # 10 × 10 learners × 25 rounds = 2,500 rounds, 25× the cap
        for learner in LEARNERS:
            commit_rounds(r, keys, learner, 25)
    shards = {keys.shard_of(learner) for learner in LEARNERS}
    committed = sum(int(r.get(keys.rounds_seq(s)) or 0) for s in keys.all_shards())
    assert committed == 2500 and len(shards) > 1

    trim = r.register_script(script_source("stream_trim"))
    for shard in shards:  # reports has read none of them: nothing may go, in any shard
        stream = keys.stream_rounds(shard)
        length = r.xlen(stream)
        trimmed, groups, _floor = trim(keys=[stream], args=[100, 100_000, 0])
        assert groups == 1 and trimmed == 0 and r.xlen(stream) == length > 100

    fleet.start("reports", env=SMALL_CAP)
    wait_for(lambda: reports_status(fleet)["rounds_total"] == committed, what="every round")
    # Once read and acknowledged, the trimmer inside reports frees them, in every shard.
    wait_for(lambda: all(r.xlen(keys.stream_rounds(s)) < 250 for s in shards), what="the trimmer")
    st = reports_status(fleet)
    assert st["rounds_total"] == committed and st["consumer_lag"] == 0
    rounds = st["streams"]["rounds"]
    assert rounds["groups"][0]["group"] == "reports" and rounds["groups"][0]["lag"] == 0
    assert rounds["groups"][0]["streams"] == keys.shards
    # The coach's group on every meta stream exists before any coach ran (ready events kept).
    meta_groups = st["streams"]["meta"]["groups"]
    assert {g["group"] for g in meta_groups} == {"reports", "coach"}
    assert all(g["streams"] == keys.shards for g in meta_groups)


def test_lag_over_the_threshold_is_an_alert(fleet: Fleet, keys: Keys) -> None:
    r = sync_redis.Redis.from_url(fleet.env["REDIS_URL"], decode_responses=True)
    fleet.start("reports", env={"TOOLOO_STREAM_LAG_ALERT": "5"})
    wait_for(lambda: reports_status(fleet)["streams"]["rounds"]["group"], what="groups")
    slow = keys.stream_rounds(keys.shard_of("a"))
    r.xgroup_create(slow, "slow", id="0")  # a reader that never reads, on one shard's stream
    for i in range(10):
        r.xadd(slow, {"round": i, "learner": "a", "region": "eu", "ms": 1})
    wait_for(lambda: reports_status(fleet)["rounds_total"] == 10, what="reports to read")
    st = reports_status(fleet)
    assert st["lag_alert_threshold"] == 5
    assert any(a.startswith("stream_lag rounds/slow 10") for a in st["alerts"]), st["alerts"]
    status, body = fleet["reports"].get("/api/v1/reports/dashboard")
    assert status == 200 and body["alert_level"] in ("yellow", "red")
    assert any(a.startswith("stream_lag rounds/slow") for a in body["alerts"]), body["alerts"]


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own: its maxmemory is about to be set very low."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_writes_at_maxmemory_answer_503_with_the_envelope(
    small_redis: RedisServer, prefix: str, tmp_path: Path
) -> None:
    fleet = Fleet(small_redis.url, prefix, tmp_path / "logs")
    try:
        fleet.start("training", "reports")
        status, body = fleet["training"].post("/api/v1/training/start", {"learner": "amy"})
        assert status == 200, body
        r = sync_redis.Redis.from_url(small_redis.url, decode_responses=True)
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", "1")  # any write is now refused: used memory > maxmemory

        status, body = fleet["training"].post("/api/v1/training/round", {"learner": "amy"})
        assert status == 503, body
        assert body["ok"] is False and body["error"]["code"] == "redis_out_of_memory"
        status, body = fleet["training"].post("/api/v1/training/start", {"learner": "bob"})
        assert status == 503 and body["error"]["code"] == "redis_out_of_memory", body

        status, body = fleet["reports"].get("/api/v1/reports/dashboard")
        assert status == 200, body
        assert body["alert_level"] == "red"
        assert any(a.startswith("redis_out_of_memory") for a in body["alerts"]), body["alerts"]
        r.config_set("maxmemory", "0")
    finally:
        fleet.stop_all()
