"""The reports dashboard: the alert level of the current metrics and the dashboard document built
from them. Pure: the route reads the metrics and the coach's fast-lane switch and passes them in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.clock import iso_ms

# The alert triggers of the rollout gates ("red" outranks "yellow"): data, not branches.
ALERTS = (
    ("error_rate_pct", ">", 0.25, "red"),
    ("uptime_pct", "<", 99.98, "red"),
    ("error_rate_pct", ">", 0.15, "yellow"),
    ("latency_p95_ms", ">", 150.0, "yellow"),
)
RECOMMENDATION = {"normal": "continue_ramp", "yellow": "hold_ramp", "red": "throttle"}


def alert_level(values: dict[str, float | None]) -> tuple[str, list[str]]:
    """The alert level and the triggers that fired (missing values never fire)."""
    fired: list[str] = []
    level = "normal"
    for metric, op, limit, colour in ALERTS:
        value = values.get(metric)
        if value is None:
            continue
        if (op == ">" and value > limit) or (op == "<" and value < limit):
            fired.append(f"{metric} {op} {limit}")
            if colour == "red" or level == "normal":
                level = colour if level != "red" else level
    return level, fired


# Colours of the alerts that do not come from the window's metrics but from the state of Redis
# and its streams (queries.lag_alerts, queries.memory_alerts): a group lagging behind holds the
# stream's memory (hold the ramp); Redis nearing maxmemory will soon refuse writes (hold the ramp);
# Redis at maxmemory refuses every write (throttle).
STREAM_LAG_COLOUR = "yellow"
MEMORY_HIGH_COLOUR = "yellow"
OUT_OF_MEMORY_COLOUR = "red"


def build_dashboard(
    m: dict[str, Any],
    window_s: int,
    at_ms: int,
    fast_lane: bool | None,
    *,
    lag_alerts: Sequence[str] = (),
    memory_alerts: Sequence[str] = (),
    memory_high_alerts: Sequence[str] = (),
) -> dict[str, Any]:
    """The dashboard document (alert level, recommendation, coach status) and its `dashboard`
    block (status, metrics, insights, next actions), built from `metrics()`'s answer and filled
    with measured values only; the `*_alerts` are fired triggers of their own."""
    latency = m["round_latency_ms"]
    level, fired = alert_level(
        {
            "error_rate_pct": m["error_rate_pct"],
            "uptime_pct": m["uptime_pct"],
            "latency_p95_ms": latency["p95"],
        }
    )
    for triggers, colour in (
        (lag_alerts, STREAM_LAG_COLOUR),
        (memory_high_alerts, MEMORY_HIGH_COLOUR),
        (memory_alerts, OUT_OF_MEMORY_COLOUR),
    ):
        fired += list(triggers)
        if triggers and (colour == "red" or level == "normal"):
            level = colour
    insights = [
        f"{m['rounds_total']} rounds recorded; {m['rounds_per_min']} rounds/min over the last "
        f"{window_s} s",
        f"{m['learners']} learners in {m['regions']} regions",
    ]
    if latency["p95"] is not None:
        insights.append(
            f"round latency p50/p95/p99: {latency['p50']}/{latency['p95']}/{latency['p99']} ms"
        )
    down = sorted(name for name, s in m["services"].items() if s["up"] is False)
    actions = [f"investigate: {trigger}" for trigger in fired]
    actions += [f"restart or inspect service {name} (down)" for name in down]
    return {
        "timestamp": iso_ms(at_ms),
        "window_s": window_s,
        "learners": m["learners"],
        "error_rate": m["error_rate_pct"],
        "latency_p95": latency["p95"],
        "latency_p99": latency["p99"],
        "uptime": m["uptime_pct"],
        "coach_status": {
            "throughput_rounds_per_min": m["coach"]["throughput_rounds_per_min"],
            # One name, one meaning fleet-wide: the p99 (as in the coach's status).
            "meta_trigger_delay_ms": m["meta_trigger_delay_ms"]["p99"],
            "meta_trigger_delay_p50_ms": m["meta_trigger_delay_ms"]["p50"],
            "fast_lane_enabled": fast_lane,
        },
        "alert_level": level,
        "alerts": fired,
        "recommendation": RECOMMENDATION[level],
        "dashboard": {
            "status": {"normal": "healthy", "yellow": "warning", "red": "critical"}[level],
            "metrics": {
                "roundsTotal": m["rounds_total"],
                "learningVelocity": m["rounds_per_min"],
                "errorRatePct": m["error_rate_pct"],
                "latencyP95Ms": latency["p95"],
                "systemHealth": m["uptime_pct"],
                "restarts": m["restarts"],
            },
            "insights": insights[:3],
            "nextActions": actions or ["continue ramp; keep monitoring"],
        },
    }
