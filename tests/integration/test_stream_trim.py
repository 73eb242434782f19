"""No silent loss in the streams, with real processes: reports stopped while training commits
more rounds than the (small) length cap would keep, the trimmer run, reports started again ->
every round counted; and Redis at `maxmemory` -> a write endpoint answers 503 with the envelope
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
from shared.fleet_totals import rounds_total_sync
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


def test_reports_counts_every_round_committed_while_it_was_stopped(
    fleet: Fleet, keys: Keys
) -> None:
    r = sync_redis.Redis.from_url(fleet.env["REDIS_URL"], decode_responses=True)
    fleet.start("reports", env=SMALL_CAP)  # creates its groups
    wait_for(lambda: reports_status(fleet)["streams"]["rounds"]["group"], what="groups")
    fleet.stop("reports")

    fleet.start("training")
    for learner in LEARNERS:
        status, body = fleet["training"].post("/api/v1/training/start", {"learner": learner})
        assert status == 200, body
    for _ in range(10):  # 10 × 10 learners × 25 rounds = 2,500 rounds, 25× the cap
        status, body = fleet["training"].post(
            "/api/v1/training/rounds", {"learners": LEARNERS, "rounds_per_learner": 25}
        )
        assert status == 200 and body["committed"] == 250, body
    committed = rounds_total_sync(r, keys)
    assert committed == 2500

    trim = r.register_script(script_source("stream_trim"))
    trimmed, groups, _floor = trim(keys=[keys.stream_rounds], args=[100, 100_000, 0])
    assert groups == 1 and trimmed == 0  # reports has read none of them: nothing may go
    assert r.xlen(keys.stream_rounds) == committed

    fleet.start("reports", env=SMALL_CAP)
    wait_for(lambda: reports_status(fleet)["rounds_total"] == committed, what="every round")
    # Once read and acknowledged, the trimmer inside reports frees them.
    wait_for(lambda: r.xlen(keys.stream_rounds) < committed, what="the trimmer to run")
    st = reports_status(fleet)
    assert st["rounds_total"] == committed and st["consumer_lag"] == 0
    rounds = st["streams"]["rounds"]
    assert rounds["groups"][0]["group"] == "reports" and rounds["groups"][0]["lag"] == 0
    # The coach's group on the meta stream exists before any coach ran (ready events are kept).
    assert {g["group"] for g in st["streams"]["meta"]["groups"]} == {"reports", "coach"}


def test_lag_over_the_threshold_is_an_alert(fleet: Fleet, keys: Keys) -> None:
    r = sync_redis.Redis.from_url(fleet.env["REDIS_URL"], decode_responses=True)
    fleet.start("reports", env={"TOOLOO_STREAM_LAG_ALERT": "5"})
    wait_for(lambda: reports_status(fleet)["streams"]["rounds"]["group"], what="groups")
    r.xgroup_create(keys.stream_rounds, "slow", id="0")  # a reader that never reads
    for i in range(10):
        r.xadd(keys.stream_rounds, {"round": i, "learner": "a", "region": "eu", "ms": 1})
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
