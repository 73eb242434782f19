"""The gates' readings from per-minute aggregates (services/reports/readings.py, pure)."""

from __future__ import annotations

from services.reports.readings import (
    demand_minutes,
    meta_trigger_misses,
    regions_with_learners,
    throughput_reading,
    worst_uptime,
)
from shared.histogram import bucket_of


def test_throughput_counts_only_minutes_with_demand_throughout() -> None:
    minutes = [
        {"needing": "0", "coach_tput": "0"},  # idle
        {"needing": "40", "coach_tput": "90"},  # demand began this minute: left out
        {"needing": "40", "coach_tput": "600"},
        {"needing": "35", "coach_tput": "620"},
        {"needing": "0", "coach_tput": "300"},  # queue emptied: left out
        {"coach_tput": "10"},  # no sample
    ]
    assert demand_minutes(minutes) == [600, 620]
    reading = throughput_reading(demand_minutes(minutes))
    assert reading == {"demand_minutes": 2, "idle": False, "p10": 600, "mean": 610.0, "min": 600}


def test_an_idle_period_is_idle_not_zero() -> None:
    idle = [{"needing": "0", "coach_tput": "0"}] * 5
    assert throughput_reading(demand_minutes(idle))["idle"] is True
    assert throughput_reading(demand_minutes(idle))["p10"] is None


def test_the_floor_is_the_pace_held_nine_minutes_in_ten() -> None:
    samples = [100] + [500] * 19  # one slow minute in twenty
    assert throughput_reading(samples)["p10"] == 500
    assert throughput_reading([100, 100] + [500] * 8)["p10"] == 100


def test_uptime_is_the_worst_critical_service() -> None:
    services = {
        "training": {"uptime_pct": 100.0},
        "coach": {"uptime_pct": 0.0},
        "meta": {"uptime_pct": 100.0},
        "orchestrator": {"uptime_pct": -1.0},  # not a critical service
        "reports": {"uptime_pct": None},
    }
    assert worst_uptime(services) == (0.0, "coach")
    assert worst_uptime({}) == (None, None)


def test_regions_are_the_configured_ones_with_learners() -> None:
    configured = ["us-east", "eu-west", "ap-south"]
    counts = {"us-east": 10, "eu-west": 0, "elsewhere": 4}
    assert regions_with_learners(configured, counts) == ["us-east"]


def test_meta_trigger_misses_count_late_and_failed_triggers() -> None:
    delays = {bucket_of(40): 97, bucket_of(400): 2}
    misses = meta_trigger_misses(delays, failed=1)
    assert (misses["late"], misses["failed"], misses["triggers"]) == (2, 1, 100)
    assert misses["pct"] == 3.0 and misses["idle"] is False
    assert meta_trigger_misses({}, 0)["idle"] is True
