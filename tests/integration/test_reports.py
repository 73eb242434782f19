"""The reports service as a real process: catching up on history, the endpoint shapes and
bounds, and exactly-once counting of training's rounds across a kill -9 of reports. Every test
runs on the single Redis and on the 3-master Redis Cluster (the shards' streams, counters and
reports' aggregates then live on different masters)."""

from __future__ import annotations

import csv
import io
import threading
import time
import urllib.request

import pytest

from harness.fleet import Fleet
from harness.polling import wait_for
from harness.redis_clients import SyncRedis
from shared.keys import Keys

pytestmark = [pytest.mark.integration, pytest.mark.backends("single", "cluster")]

BAD_QUERIES = [
    "/api/v1/reports/metrics?window=59",
    "/api/v1/reports/metrics?window=86401",
    "/api/v1/reports/metrics?window=abc",
    "/api/v1/reports/metrics?window=60&unknown=1",
    "/api/v1/reports/timeseries?metric=nope&minutes=10",
    "/api/v1/reports/timeseries?minutes=10",
    "/api/v1/reports/timeseries?metric=rounds&minutes=0",
    "/api/v1/reports/timeseries?metric=rounds&minutes=1441",
    "/api/v1/reports/export?format=xml",
    "/api/v1/reports/export?format=csv&minutes=2000",
    "/api/v1/reports/dashboard?window=10",
]


def client(fleet: Fleet) -> SyncRedis:
    return fleet.redis()


def applied_rounds(fleet: Fleet) -> int:
    status, body = fleet["reports"].get("/api/v1/reports/status")
    assert status == 200, body
    return body["status"]["rounds_total"]


def commit(r: SyncRedis, keys: Keys, learner: str, n: int, ms: float = 20.0) -> None:
    """n rounds of `learner` as the commit script leaves them: its shard's round counter moved
    on and one event per round on its shard's stream, in one MULTI (one slot)."""
    shard = keys.shard_of(learner)
    with r.pipeline(transaction=True) as pipe:
        pipe.incrby(keys.rounds_seq(shard), n)
        for i in range(n):
            pipe.xadd(
                keys.stream_rounds(shard),
                {"round": i, "learner": learner, "region": "eu", "ts": 1, "ms": ms + i, "avg": 60},
            )
        pipe.execute()


def committed(r: SyncRedis, keys: Keys) -> int:
    """The fleet's rounds total: the sum of the shards' round counters."""
    return sum(int(r.get(keys.rounds_seq(s)) or 0) for s in keys.all_shards())


def test_catches_up_on_history_and_answers_the_contract_shapes(fleet: Fleet, keys: Keys) -> None:
    r = client(fleet)
    for i in range(10):  # 50 rounds of 10 learners, over several shards
        commit(r, keys, f"h{i}", 5, ms=20 + 5 * i)
    assert len({keys.shard_of(f"h{i}") for i in range(10)}) > 1
    r.xadd(
        keys.stream_meta(keys.shard_of("h0")),
        {"type": "completed", "learner": "h0", "round": 50, "delay_ms": 35},
    )
    r.xadd(keys.stream_system, {"type": "process_restarted", "service": "coach", "ts": 1})
    fleet.start("reports")
    wait_for(lambda: applied_rounds(fleet) == 50, what="reports to catch up")

    status, body = fleet["reports"].get("/api/v1/reports/status")
    st = body["status"]
    assert st["ok"] is True and st["consumer"]["running"] is True
    assert st["events_applied"] >= 52  # + reports' own service_started
    assert st["last_event_time"].endswith("Z")
    assert set(st["streams"]) == {"rounds", "meta", "system"}
    wait_for(
        lambda: fleet["reports"].get("/api/v1/reports/status")[1]["status"]["consumer_lag"] == 0
    )

    status, body = fleet["reports"].get("/api/v1/reports/metrics?window=300")
    assert status == 200 and body["ok"] is True and body["window_s"] == 300
    m = body["metrics"]
    for field in (
        "rounds_total", "rounds_per_min", "requests", "errors", "error_rate_pct",
        "round_latency_ms", "meta_trigger_delay_ms", "learners", "regions", "coach",
        "uptime_pct", "restarts", "services",
    ):  # fmt: skip
        assert field in m, field
    assert m["rounds_total"] == 50
    # The rounds' own compute time; round_latency_ms is the round endpoints' request latency
    # (none here: nothing called them).
    assert set(m["round_compute_ms"]) >= {"p50", "p95", "p99"}
    assert 20 < m["round_compute_ms"]["p50"] <= m["round_compute_ms"]["p95"] <= 80
    assert m["round_latency_ms"]["count"] == 0 and m["round_latency_ms"]["p95"] is None
    assert m["meta_trigger_delay_ms"]["count"] == 1
    assert set(m["coach"]) == {
        "throughput_rounds_per_min",
        "demand_throughput",
        "coverage",
        "needing_coaching",
    }
    assert m["coach"]["demand_throughput"]["idle"] is True  # nobody needed coaching
    assert m["restarts"] == 1 and m["services"]["coach"]["restarts"] == 1
    assert m["services"]["reports"]["up"] is True

    status, body = fleet["reports"].get(
        "/api/v1/reports/timeseries?metric=rounds_per_min&minutes=5"
    )
    assert status == 200 and len(body["points"]) == 5
    assert sum(p["value"] for p in body["points"]) == 50
    assert body["points"][-1]["ts"] > body["points"][0]["ts"]
    status, body = fleet["reports"].get("/api/v1/reports/timeseries?metric=rounds&minutes=3")
    assert body["points"][-1]["value"] == 50  # cumulative

    status, body = fleet["reports"].get("/api/v1/reports/dashboard")
    assert status == 200
    assert set(body) >= {
        "timestamp", "learners", "error_rate", "latency_p95", "uptime", "coach_status",
        "alert_level", "recommendation", "dashboard",
    }  # fmt: skip
    assert set(body["coach_status"]) == {
        "throughput_rounds_per_min",
        "meta_trigger_delay_ms",  # the p99, as in the coach's status
        "meta_trigger_delay_p50_ms",
        "fast_lane_enabled",
    }

    status, body = fleet["reports"].get("/api/v1/reports/export?format=json&minutes=4")
    assert status == 200 and len(body["rows"]) == 4 and "latency_p95_ms" in body["columns"]
    url = fleet["reports"].url + "/api/v1/reports/export?format=csv&minutes=4"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(resp.read().decode())))
    assert rows[0][:3] == ["minute", "ts", "rounds"] and len(rows) == 5

    for path in BAD_QUERIES:
        status, body = fleet["reports"].get(path)
        assert status == 422, (path, status, body)
        assert body["ok"] is False and body["error"]["code"] == "validation_error"


def test_error_rate_reflects_http_stats(fleet: Fleet, keys: Keys) -> None:
    r = client(fleet)
    minute = int(time.time()) // 60
    r.hset(
        keys.http_stats(minute - 1), mapping={"training:requests": 10_000, "training:errors": 20}
    )
    fleet.start("reports")
    _, body = fleet["reports"].get("/api/v1/reports/metrics?window=120")
    m = body["metrics"]
    assert m["errors"] == 20 and m["requests"] >= 10_000
    assert 0.19 < m["error_rate_pct"] <= 0.2


def _run_rounds(fleet: Fleet, learners: list[str], stop: threading.Event) -> None:
    for _ in range(200):  # bounded
        if stop.is_set():
            return
        fleet["training"].post(
            "/api/v1/training/rounds", {"learners": learners, "rounds_per_learner": 5}
        )


def test_rounds_through_training_counted_exactly_once_across_kill_9(
    fleet: Fleet, keys: Keys
) -> None:
    r = client(fleet)
    fleet.start("training", "reports")
    learners = ["alice", "bob", "carol"]
    for learner in learners:
        status, body = fleet["training"].post("/api/v1/training/start", {"learner": learner})
        assert status == 200, body
    for _ in range(3):
        status, body = fleet["training"].post(
            "/api/v1/training/rounds", {"learners": learners, "rounds_per_learner": 4}
        )
        assert status == 200 and body["committed"] == 12, body

    def caught_up() -> bool:
        return applied_rounds(fleet) == committed(r, keys)

    wait_for(caught_up, what="reports total == the shards' round counters")
    assert applied_rounds(fleet) == 36

    # kill -9 reports while rounds keep flowing, then restart it
    stop = threading.Event()
    writer = threading.Thread(target=_run_rounds, args=(fleet, learners, stop))
    writer.start()
    try:
        wait_for(lambda: committed(r, keys) > 100, what="rounds flowing")
        fleet["reports"].kill()
        wait_for(lambda: committed(r, keys) > 200, what="rounds while reports down")
        fleet.start("reports")
        wait_for(lambda: committed(r, keys) > 300, what="rounds after restart")
    finally:
        stop.set()
        writer.join(timeout=60)
    wait_for(caught_up, what="reports total == the shards' round counters after kill -9")
    assert_exactly_once(r, keys, applied_rounds(fleet))


def assert_exactly_once(r: SyncRedis, keys: Keys, reported: int) -> None:
    """Reports' total is the sum of the shards' round counters, and so is every shard's own
    count; nothing is left pending in any shard's group."""
    assert reported == committed(r, keys)
    for shard in keys.all_shards():
        seq = int(r.get(keys.rounds_seq(shard)) or 0)
        assert int(r.hget(keys.reports_totals(shard), "events:rounds") or 0) == seq, shard
        assert r.xpending(keys.stream_rounds(shard), "reports")["pending"] == 0, shard


def _commit_rounds(r: SyncRedis, keys: Keys, stop: threading.Event) -> None:
    for i in range(2000):  # bounded
        if stop.is_set():
            return
        commit(r, keys, f"w{i % 40}", 3)
        time.sleep(0.002)


def test_commits_in_every_shard_counted_exactly_once_across_kill_9(
    fleet: Fleet, keys: Keys
) -> None:
    """The same as above with the commits written straight to the shards (their counters and
    streams, as the commit script leaves them), so it needs no training process: reports is
    killed -9 mid-stream and restarted under the same consumer name."""
    r = client(fleet)
    fleet.start("reports")
    stop = threading.Event()
    writer = threading.Thread(target=_commit_rounds, args=(r, keys, stop))
    writer.start()
    try:
        wait_for(lambda: committed(r, keys) > 300, what="rounds flowing")
        fleet["reports"].kill()
        wait_for(lambda: committed(r, keys) > 900, what="rounds while reports down")
        fleet.start("reports")
        wait_for(lambda: committed(r, keys) > 1500, what="rounds after restart")
    finally:
        stop.set()
        writer.join(timeout=60)
    wait_for(
        lambda: applied_rounds(fleet) == committed(r, keys),
        what="reports total == the shards' round counters after kill -9",
    )
    assert_exactly_once(r, keys, applied_rounds(fleet))
    _, body = fleet["reports"].get("/api/v1/reports/status")
    assert body["status"]["consumer"]["owned_shards"] == list(keys.all_shards())
    assert body["status"]["streams"]["rounds"]["streams"] == keys.shards
