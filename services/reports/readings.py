"""Pure readings the gates rely on, computed from per-minute aggregates and the service table:
coach throughput over the minutes learners needed coaching, the worst critical service's
uptime, and the configured regions that have learners. No Redis, no aiohttp."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.fleet import SUPERVISED
from shared.histogram import bucket_upper

# The services whose downtime is the fleet's: every supervised one (the orchestrator only watches).
CRITICAL_SERVICES: tuple[str, ...] = SUPERVISED


def _num(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def demand_minutes(minutes: Sequence[Mapping[str, str]]) -> list[int]:
    """The coach throughput of each minute in which learners needed coaching throughout: its own
    gauge sample and the one of the minute before both show a queue. A minute in which the queue
    only filled (or emptied) measures less than the coach's pace, so it is left out, and so is a
    minute without a sample."""
    out: list[int] = []
    before: int | None = None
    for fields in minutes:
        needing, tput = _num(fields.get("needing")), _num(fields.get("coach_tput"))
        if needing and before and tput is not None:
            out.append(tput)
        before = needing
    return out


def throughput_reading(samples: Sequence[int]) -> dict[str, Any]:
    """Throughput over demand minutes: its floor (the 10th percentile, the pace held 90 % of
    the time: "stable at ≥ X" reads it), mean and lowest; `idle` when no minute had demand."""
    if not samples:
        return {"demand_minutes": 0, "idle": True, "p10": None, "mean": None, "min": None}
    ordered = sorted(samples)
    rank = max(1, math.ceil(0.10 * len(ordered)))
    return {
        "demand_minutes": len(ordered),
        "idle": False,
        "p10": ordered[rank - 1],
        "mean": round(sum(ordered) / len(ordered), 3),
        "min": ordered[0],
    }


def worst_uptime(services: Mapping[str, Mapping[str, Any]]) -> tuple[float | None, str | None]:
    """(uptime %, service) of the critical service that was up least; a mean would let one
    service fully down among five read as 80 %."""
    known = [
        (float(row["uptime_pct"]), name)
        for name, row in services.items()
        if name in CRITICAL_SERVICES and row.get("uptime_pct") is not None
    ]
    if not known:
        return None, None
    value, name = min(known)
    return value, name


def regions_with_learners(configured: Iterable[str], counts: Mapping[str, int]) -> list[str]:
    """The configured regions (TOOLOO_REGIONS) that have at least one learner."""
    return [r for r in configured if counts.get(r, 0) > 0]


LATE_TRIGGER_MS = 150.0  # a meta trigger slower than this is late (gate 1's pass threshold)


def meta_trigger_misses(delays: Mapping[int, int], failed: int) -> dict[str, Any]:
    """Meta triggers missed (failed) or late (> LATE_TRIGGER_MS) as a share of all triggers;
    `idle` when there was none. Late is counted by bucket: a bucket whose upper bound is above
    the limit counts as late, so the share errs on the strict side (by one bucket, ~12 %)."""
    total = sum(c for c in delays.values() if c > 0) + max(0, failed)
    if total == 0:
        return {"pct": None, "late": 0, "failed": 0, "triggers": 0, "idle": True}
    late = sum(c for i, c in delays.items() if c > 0 and bucket_upper(i) > LATE_TRIGGER_MS)
    return {
        "pct": round(100.0 * (late + max(0, failed)) / total, 4),
        "late": late,
        "failed": max(0, failed),
        "triggers": total,
        "idle": False,
    }
