"""The coach's status document (`GET /api/v1/auto-coach/status`), the same on every replica:
everything in it is read from Redis."""

from __future__ import annotations

from typing import Any

import orjson

from services.coach.settings_store import CoachSettings
from services.coach.store import (
    LAST_ACTION,
    LAST_ACTION_AT,
    LAST_META_ACTION,
    LAST_STATUS,
    OUTAGE_SERVICES,
    THROUGHPUT_WINDOW_S,
    CoachStore,
    CounterName,
)


def _json(raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


async def build_status(
    store: CoachStore,
    *,
    instance: str,
    leader: bool,
    settings: CoachSettings | None = None,
) -> dict[str, Any]:
    """The status document of docs/ARCHITECTURE.md §3 (coach), plus the dashboard's names
    `throughput_rounds_per_min` and `meta_trigger_delay_ms` (the p99)."""
    settings = settings or await store.load_settings()
    reading = await store.read_status()
    per_min = await store.rounds_per_min()
    cover = await store.coverage()
    delays = await store.meta_delays()
    state = reading.state
    meta_count = reading.counter(CounterName.META_TRIGGERS)
    return {
        "active": reading.active,
        "leader": leader,
        "instance": instance,
        "leaderInstance": reading.leader_instance,
        "roundsRun": reading.counter(CounterName.ROUNDS_RUN),
        "boostRounds": reading.counter(CounterName.BOOST_ROUNDS),
        "ticks": reading.counter(CounterName.TICKS),
        "learnerErrors": reading.counter(CounterName.LEARNER_ERRORS),
        "throughput": {"roundsPerMin": per_min, "windowS": THROUGHPUT_WINDOW_S},
        "throughput_rounds_per_min": per_min,
        "learnersNeedingCoaching": cover["needing"],
        "learnersReady": reading.ready,
        "coverage": cover["ratio"],
        "coverageDetail": cover,
        "metaTriggered": meta_count > 0,
        "metaTrigger": {
            "count": meta_count,
            "failures": reading.counter(CounterName.META_FAILURES),
            "delayMs": {"p50": delays["p50"], "p99": delays["p99"], "last": delays["last"]},
            "samples": delays["samples"],
        },
        "meta_trigger_delay_ms": delays["p99"],
        "lastAction": state.get(LAST_ACTION, "idle"),
        "lastActionAt": int(state[LAST_ACTION_AT]) if state.get(LAST_ACTION_AT) else None,
        "lastStatus": _json(state.get(LAST_STATUS)),
        "lastMetaAction": state.get(LAST_META_ACTION),
        "thresholds": settings.thresholds(),
        "live": {
            "intervalMs": settings.live_interval_ms,
            "microBatchesPerTick": settings.live_micro_batches,
            "batchSize": settings.live_batch_size,
            "weight": settings.live_weight,
        },
        "fastLane": {
            **settings.fastLane.model_dump(),
            "learners": reading.fast_lane_size,
            "learnerIds": sorted(reading.fast_lane_sample),
        },
        "outage": {service: _json(reading.outage(service)) for service in OUTAGE_SERVICES},
    }
