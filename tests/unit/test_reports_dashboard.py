"""The reports dashboard document, built from a metrics answer (pure, no Redis)."""

from __future__ import annotations

from typing import Any

from services.reports.dashboard import build_dashboard


def metrics(**overrides: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "rounds_total": 120,
        "rounds_per_min": 12.5,
        "error_rate_pct": 0.0,
        "round_latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0, "count": 120},
        "meta_trigger_delay_ms": {"p50": 40.0, "p99": 80.0, "count": 2},
        "learners": 7,
        "regions": 2,
        "coach": {"throughput_rounds_per_min": 30, "coverage": 1.0, "needing_coaching": 3},
        "uptime_pct": 100.0,
        "restarts": 0,
        "services": {"coach": {"uptime_pct": 100.0, "restarts": 0, "up": True}},
    }
    m.update(overrides)
    return m


def test_a_healthy_fleet_continues_the_ramp() -> None:
    doc = build_dashboard(metrics(), 60, 1_700_000_000_123, True)
    assert doc["timestamp"] == "2023-11-14T22:13:20.123Z"
    assert (doc["alert_level"], doc["alerts"], doc["recommendation"]) == (
        "normal",
        [],
        "continue_ramp",
    )
    assert doc["coach_status"] == {
        "throughput_rounds_per_min": 30,
        "meta_trigger_delay_ms": 80.0,  # the p99, as everywhere
        "meta_trigger_delay_p50_ms": 40.0,
        "fast_lane_enabled": True,
    }
    assert doc["dashboard"]["status"] == "healthy"
    assert doc["dashboard"]["nextActions"] == ["continue ramp; keep monitoring"]
    assert doc["dashboard"]["insights"][2] == "round latency p50/p95/p99: 1.0/2.0/3.0 ms"


def test_a_down_service_and_a_fired_trigger_are_next_actions() -> None:
    m = metrics(
        error_rate_pct=0.3,
        services={"coach": {"uptime_pct": 50.0, "restarts": 1, "up": False}},
    )
    doc = build_dashboard(m, 300, 0, None)
    assert (doc["alert_level"], doc["recommendation"]) == ("red", "throttle")
    assert doc["dashboard"]["nextActions"] == [
        "investigate: error_rate_pct > 0.25",
        "investigate: error_rate_pct > 0.15",
        "restart or inspect service coach (down)",
    ]
    assert doc["coach_status"]["fast_lane_enabled"] is None


def test_stream_lag_holds_the_ramp_and_out_of_memory_throttles() -> None:
    lag = ["stream_lag rounds/reports 200000 > 100000"]
    doc = build_dashboard(metrics(), 60, 0, True, lag_alerts=lag)
    assert doc["alert_level"] == "yellow" and doc["alerts"] == lag
    assert doc["recommendation"] == "hold_ramp"
    oom = ["redis_out_of_memory used 100.4 % of maxmemory"]
    doc = build_dashboard(metrics(), 60, 0, True, lag_alerts=lag, memory_alerts=oom)
    assert doc["alert_level"] == "red" and doc["alerts"] == lag + oom
    assert doc["recommendation"] == "throttle"


def test_redis_memory_past_the_alert_share_holds_the_ramp() -> None:
    from services.reports.queries import memory_alerts, memory_high_alerts

    def memory(pct: float | None) -> dict[str, Any]:
        return {"used_bytes": 0, "maxmemory_bytes": 0, "used_pct": pct, "policy": "noeviction"}

    assert memory_high_alerts(memory(79.9), 80) == []
    assert memory_high_alerts(memory(None), 80) == []  # no maxmemory: nothing to warn of
    high = memory_high_alerts(memory(85.0), 80)
    assert high == ["redis_memory_high used 85.0 % of maxmemory >= 80 %"]
    assert memory_high_alerts(memory(100.0), 80) == []  # that is the red alert's case
    assert memory_alerts(memory(100.0)) != []
    doc = build_dashboard(metrics(), 60, 0, True, memory_high_alerts=high)
    assert doc["alert_level"] == "yellow" and doc["alerts"] == high
    assert doc["recommendation"] == "hold_ramp"
