"""The original fleet's comprehensive report (`GET /api/v1/reports/comprehensive`), built over
this fleet's own figures: reports' metrics of a window and its all-time totals. Pure: the route
reads, this shapes.

The original's report also covered segmentation, budget and capabilities, products this fleet
does not have: those parts are null here, and listed in `outOfScope`. Its milestones and health
were partly fixed texts ("excellent" whatever happened); here each is decided from a measured
figure, and `unknown` when there is none yet.
"""

from __future__ import annotations

from typing import Any

TITLE = "TooLoo fleet: comprehensive report"
OUT_OF_SCOPE = ("segmentation", "budget", "capabilities")
# overallHealth from the window's error rate (%) and mean uptime (%): the first row met wins.
HEALTH = (("excellent", 0.5, 99.9), ("good", 1.0, 99.0))
FALLBACK_RECOMMENDATIONS = (
    "Check the rollout gates against live metrics: GET /api/v1/system/gates.",
    "Watch rounds per minute and round latency over a longer window: ?window=3600.",
    "Keep the fast lane on for learners that must reach readiness first.",
)


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def health(error_rate_pct: float | None, uptime_pct: float | None, requests: int) -> str:
    if uptime_pct is None and not requests:
        return "unknown"
    errors = error_rate_pct or 0.0
    uptime = 100.0 if uptime_pct is None else uptime_pct
    for label, max_errors, min_uptime in HEALTH:
        if errors < max_errors and uptime >= min_uptime:
            return label
    return "degraded"


def _milestone(done: int, of: int) -> str:
    if of == 0 or done == 0:
        return "not_started"
    return "achieved" if done >= of else "in_progress"


def build(
    metrics: dict[str, Any],
    totals: dict[str, str],
    *,
    window_s: int,
    generated: str,
    fast_lane: bool | None,
    details: bool,
) -> dict[str, Any]:
    """The report. `metrics` is reports' metrics document of the window, `totals` its all-time
    counters summed over the shards."""
    learners = _int(metrics.get("learners"))
    coach = metrics.get("coach") or {}
    needing = _int(coach.get("needing_coaching"))
    ready = max(0, learners - needing)
    completed = _int(totals.get("meta:completed"))
    failed = _int(totals.get("meta:failed"))
    training = {
        "learners": learners,
        "readyLearners": ready,
        "needingCoaching": needing,
        "roundsTotal": _int(totals.get("rounds")),
        "roundsPerMin": metrics.get("rounds_per_min"),
        "roundLatencyMs": metrics.get("round_latency_ms"),
        "regions": metrics.get("regions"),
    }
    meta = {
        "readyEvents": _int(totals.get("meta:ready")),
        "completed": completed,
        "failed": failed,
        "triggerDelayMs": metrics.get("meta_trigger_delay_ms"),
    }
    coach_data = {
        "throughputRoundsPerMin": coach.get("throughput_rounds_per_min"),
        "coverage": coach.get("coverage"),
        "needingCoaching": needing,
        "fastLane": fast_lane,
    }
    data: dict[str, Any] = {
        "timestamp": generated,
        "windowS": window_s,
        "training": training,
        "meta": meta,
        "coach": coach_data,
        **dict.fromkeys(OUT_OF_SCOPE),
    }
    if details:
        data["services"] = metrics.get("services")
        data["errorRatePct"] = metrics.get("error_rate_pct")
        data["uptimePct"] = metrics.get("uptime_pct")
    overall = health(
        metrics.get("error_rate_pct"), metrics.get("uptime_pct"), _int(metrics.get("requests"))
    )
    return {
        "summary": {
            "title": TITLE,
            "generated": generated,
            "milestones": {
                "trainingMastery": _milestone(ready, learners),
                "metaLearning": _milestone(completed, learners),
                "segmentationEngine": None,
                "advancedReporting": "achieved",
            },
            "overallHealth": overall,
        },
        "insights": _insights(training, meta, coach_data, overall),
        "data": data,
        "recommendations": _recommendations(training, meta, metrics),
        "outOfScope": list(OUT_OF_SCOPE),
    }


def _insights(
    training: dict[str, Any], meta: dict[str, Any], coach: dict[str, Any], overall: str
) -> list[str]:
    learners = training["learners"]
    out = [
        f"{training['readyLearners']} of {learners} learners have reached readiness "
        f"({training['roundsTotal']} rounds in all).",
        f"Meta-learning completed for {meta['completed']} learners"
        + (f", {meta['failed']} failed." if meta["failed"] else "."),
    ]
    if coach["throughputRoundsPerMin"] is not None:
        out.append(f"The coach runs {coach['throughputRoundsPerMin']} rounds a minute.")
    out.append(f"Fleet health over the window: {overall}.")
    return out


def _recommendations(
    training: dict[str, Any], meta: dict[str, Any], metrics: dict[str, Any]
) -> list[str]:
    out: list[str] = []
    if training["needingCoaching"]:
        out.append(
            f"Coach the {training['needingCoaching']} learners below readiness: start the coach "
            "(POST /api/v1/auto-coach/start) or raise its microBatchesPerTick."
        )
    if meta["failed"]:
        out.append(f"Look into the {meta['failed']} failed meta-learning runs (events:meta).")
    if (metrics.get("error_rate_pct") or 0.0) >= HEALTH[0][1]:
        out.append(f"Bring the error rate ({metrics['error_rate_pct']} %) below 0.5 %.")
    for text in FALLBACK_RECOMMENDATIONS:
        if len(out) >= len(FALLBACK_RECOMMENDATIONS):
            break
        out.append(text)
    return out[:3]
