"""GET /api/v1/system/gates on live metrics: the reports service turns what is written into
Redis (round and meta events, request counters, coach throughput, service events) into metrics,
and the gateway evaluates Gate 1's decision branches on them; with reports down it holds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as sync_redis

from harness.fleet import Fleet
from harness.polling import wait_for
from shared.histogram import bucket_of
from shared.keys import Keys

pytestmark = pytest.mark.integration


@pytest.fixture
def r(fleet: Fleet) -> Iterator[sync_redis.Redis]:
    client = sync_redis.Redis.from_url(fleet.env["REDIS_URL"], decode_responses=True)
    yield client
    client.close()


def _gate1(fleet: Fleet) -> dict[str, Any]:
    status, body = fleet["web"].get("/api/v1/system/gates")
    assert status == 200, body
    return next(g for g in body["gates"] if g["number"] == 1)


def _verdict_becomes(fleet: Fleet, verdict: str) -> dict[str, Any]:
    return wait_for(
        lambda: (g := _gate1(fleet))["verdict"] == verdict and g,
        f"gate 1 verdict {verdict}",
        timeout_s=10,
    )


def test_gate1_branches_follow_live_metrics(fleet: Fleet, r: sync_redis.Redis) -> None:
    keys = Keys(fleet.env["TOOLOO_REDIS_PREFIX"])
    fleet.start("reports", "web")  # both append service_started: uptime is measured
    now = time.time()
    minute, second = int(now // 60), int(now)
    pipe = r.pipeline()
    for i in range(200):
        pipe.xadd(
            keys.stream_rounds(keys.shard_of("l-1")),
            {"round": i + 1, "learner": "l-1", "region": "eu", "ts": int(now * 1000), "ms": 20,
             "avg": 50},
        )  # fmt: skip
    for i in range(5):
        pipe.xadd(
            keys.stream_meta(keys.shard_of(f"l-{i}")),
            {"type": "completed", "learner": f"l-{i}", "round": i + 1, "delay_ms": 40,
             "ts": int(now * 1000)},
        )  # fmt: skip
    # 5 server errors in 10,000 requests: 0.05 %; the round endpoints answered in about 20 ms.
    pipe.hset(
        keys.http_stats(minute),
        mapping={"training:requests": 10_000, "training:errors": 5, f"rlat:{bucket_of(20)}": 200},
    )
    pipe.set(keys.coach_throughput(second), 180, ex=120)
    # A 5K canary in one region (the learner index and region counts reports sums).
    pipe.zadd(keys.learners_index(0), {f"l-{i}": i for i in range(5_000)})
    pipe.hset(keys.learners_regions(0), "us-east", 5_000)
    pipe.execute()

    def applied() -> dict[str, Any] | None:
        _, body = fleet["reports"].get("/api/v1/reports/metrics?window=60")
        m = body["metrics"]
        done = m["rounds_in_window"] >= 200 and m["meta_trigger_delay_ms"]["count"] >= 5
        return m if done and m["uptime_pct"] is not None else None

    wait_for(applied, "reports to apply the streams", timeout_s=10)

    # Every criterion of the load test passes; the pre-flight checklist does not (no coach, no
    # orchestrator here, nothing signed off): HOLD, for pre-flight items only.
    def load_test_passes() -> dict[str, Any] | None:
        g = _gate1(fleet)
        core = [c for c in g["criteria"] if not c["id"].startswith("pf_")]
        return g if all(c["status"] in ("pass", "idle") for c in core) else None

    gate = wait_for(load_test_passes, "gate 1's load-test criteria to pass", timeout_s=10)
    by_id = {c["id"]: c for c in gate["criteria"]}
    assert gate["verdict"] == "HOLD" and "pre-flight" in gate["decision"], gate["reason"]
    assert all(i.startswith("pf_") for i in gate["failed"] + gate["not_measured"])
    assert by_id["pf_shards"]["status"] == "pass"  # what the fleet can check, it checks
    assert by_id["pf_incident_channel"]["status"] == "not_measured"  # a sign-off, never invented
    # Nobody needed coaching: throughput is "idle, no demand", never a HOLD.
    assert by_id["coach_throughput"]["status"] == "idle"
    assert by_id["latency_p95"]["measured"] < 25
    assert by_id["error_rate"]["measured"] < 0.6
    assert by_id["meta_trigger_delay"]["measured"] < 150
    assert by_id["zero_crashes"]["measured"] == 0

    # Error rate fails: HOLD 1 week (or a hotfix under 2 hours).
    r.hincrby(keys.http_stats(minute), "training:errors", 1_000)
    gate = _verdict_becomes(fleet, "HOLD 1 week")
    core_failed = [i for i in gate["failed"] if not i.startswith("pf_")]
    assert core_failed == ["error_rate"] and "hotfix" in gate["action"]

    # Errors gone; learners needed coaching through the last minute and the coach ran only 50
    # rounds a minute: HOLD 48 hours.
    r.hset(keys.http_stats(minute), "training:errors", 0)
    for m in (minute - 2, minute - 1):
        r.hset(keys.reports_system_minute(m), mapping={"needing": 30, "coach_tput": 50})
    gate = _verdict_becomes(fleet, "HOLD 48h")
    assert [i for i in gate["failed"] if not i.startswith("pf_")] == ["coach_throughput"]

    # A service down for most of the window drags uptime under 99.90 %: NO-GO.
    r.hset(keys.reports_system_minute(minute - 1), "coach_tput", 600)
    r.xadd(keys.stream_system, {"type": "service_started", "service": "coach", "ts": 0})
    time.sleep(0.05)  # distinct entry-id milliseconds, so the two transitions are ordered
    r.xadd(keys.stream_system, {"type": "service_stopped", "service": "coach", "ts": 0})
    gate = _verdict_becomes(fleet, "NO-GO")
    assert "uptime" in gate["failed"] and gate["owner"] == "Infrastructure Lead"

    # Reports goes away: nothing can be decided, every gate holds and says why.
    fleet["reports"].stop()
    status, body = fleet["web"].get("/api/v1/system/gates")
    assert status == 200 and body["metrics_available"] is False
    assert "reports" in body["reason"]
    assert {g["verdict"] for g in body["gates"]} == {"HOLD"}
    gate1 = next(g for g in body["gates"] if g["number"] == 1)
    assert all(
        c["status"] == "not_measured"
        for c in gate1["criteria"]
        if c["id"] != "zero_crashes" and not c["id"].startswith("pf_")
    )


def test_phase3_gate_judges_real_boosts_and_the_operators_fast_lane(fleet: Fleet) -> None:
    fleet.start("training", "meta", "coach", "reports", "web")
    coach, web = fleet["coach"], fleet["web"]

    def phase3() -> dict[str, Any]:
        status, body = web.get("/api/v1/system/gates")
        assert status == 200, body
        return {c["id"]: c for c in body["gates"][0]["criteria"]} | {"_gate": body["gates"][0]}

    # No boost yet: pending, not a failure; the coach is not started: that fails.
    first = phase3()
    assert first["boost_3_rounds"]["status"] == "not_measured"
    assert first["coach_active"]["status"] == "fail" and first["_gate"]["verdict"] == "FAIL"

    assert fleet["training"].post("/api/v1/training/start", {})[0] == 200
    assert coach.post("/api/v1/auto-coach/start", {})[0] == 200
    status, body = coach.post("/api/v1/auto-coach/boost", {"rounds": 3})
    assert status == 200 and body["boosted"] == 3, body
    # The coach recorded the real boost's duration; the gate judges it (per 3 rounds, < 10 s).
    boosts = coach.get("/api/v1/auto-coach/status")[1]["status"]["boosts"]
    assert boosts[0]["rounds"] == 3 and boosts[0]["ms"] > 0
    got = wait_for(
        lambda: (c := phase3())["boost_3_rounds"]["status"] != "not_measured" and c,
        "the boost to be judged",
        timeout_s=10,
    )
    assert got["boost_3_rounds"]["status"] == "pass"
    assert got["boost_3_rounds"]["measured"] == round(boosts[0]["ms"] / 1000, 6)
    assert got["coach_active"]["status"] == "pass" and got["fast_lane"]["status"] == "pass"
    # No orchestrator here: pre-arm is not measured, so the gate is pending, never passed.
    assert got["prearm_armed"]["status"] == "not_measured"
    assert got["_gate"]["verdict"] in ("PENDING", "FAIL") and not got["_gate"]["passed"]

    # The operator changes the fast lane: shown as their decision, not a failure.
    status, body = coach.post("/api/v1/auto-coach/fast-lane", {"weight": 3, "intervalMs": 900})
    assert status == 200, body
    lane = wait_for(
        lambda: (c := phase3())["fast_lane"]["status"] == "operator" and c["fast_lane"],
        "the fast lane shown as the operator's",
        timeout_s=10,
    )
    assert "weight 3, interval 900 ms" in lane["reason"]
