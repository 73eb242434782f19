"""The coach's runtime state in Redis (`keys.coach_state`) and the status document.

`active` persists there, so a restarted coach that was active resumes on its own, and a stop sent
to any replica stops the leader's loop. `lastAction`, `lastStatus` and the outages are written by
the leader (the loop and the meta trigger), so every replica answers the same status.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis.asyncio import Redis

from services.coach import stats
from services.coach.settings_store import CoachSettings, load
from shared.keys import Keys

ACTIVE = "active"
LAST_ACTION = "lastAction"
LAST_ACTION_AT = "lastActionAt"
LAST_STATUS = "lastStatus"
LAST_META_ACTION = "lastMetaAction"
OUTAGE_PREFIX = "outage."
FASTLANE_SAMPLE = 50


def now_ms() -> int:
    return int(time.time() * 1000)


def action_fields(action: str) -> dict[str, str]:
    return {LAST_ACTION: action, LAST_ACTION_AT: str(now_ms())}


def outage_field(service: str) -> str:
    return OUTAGE_PREFIX + service


def outage_value(since_ms: int, error: str) -> str:
    return orjson.dumps({"since": since_ms, "error": error[:300]}).decode()


async def set_active(redis: Redis, keys: Keys, active: bool, action: str) -> None:
    await redis.hset(
        keys.coach_state, mapping={ACTIVE: "1" if active else "0", **action_fields(action)}
    )


def _json(raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


async def build_status(
    redis: Redis,
    keys: Keys,
    *,
    instance: str,
    leader: bool,
    settings: CoachSettings | None = None,
) -> dict[str, Any]:
    """The status document of docs/ARCHITECTURE.md §3 (coach), plus the seed's dashboard names
    `throughput_rounds_per_min` and `meta_trigger_delay_ms` (the p99)."""
    settings = settings or await load(redis, keys)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.coach_state)
        pipe.hgetall(keys.coach_stats)
        pipe.zcard(keys.coach_ready)
        pipe.scard(keys.coach_fastlane)
        pipe.srandmember(keys.coach_fastlane, FASTLANE_SAMPLE)
        pipe.get(keys.coach_lease)
        state, counters, ready, fast_count, fast_sample, holder = await pipe.execute()
    per_min = await stats.rounds_per_min(redis, keys)
    cover = await stats.coverage(redis, keys)
    delays = await stats.meta_delays(redis, keys)
    meta_count = int(counters.get("metaTriggers", 0))
    outage = {service: _json(state.get(outage_field(service))) for service in ("training", "meta")}
    return {
        "active": state.get(ACTIVE) == "1",
        "leader": leader,
        "instance": instance,
        "leaderInstance": holder,
        "roundsRun": int(counters.get("roundsRun", 0)),
        "boostRounds": int(counters.get("boostRounds", 0)),
        "ticks": int(counters.get("ticks", 0)),
        "learnerErrors": int(counters.get("learnerErrors", 0)),
        "throughput": {"roundsPerMin": per_min, "windowS": stats.THROUGHPUT_WINDOW_S},
        "throughput_rounds_per_min": per_min,
        "learnersNeedingCoaching": cover["needing"],
        "learnersReady": int(ready),
        "coverage": cover["ratio"],
        "coverageDetail": cover,
        "metaTriggered": meta_count > 0,
        "metaTrigger": {
            "count": meta_count,
            "failures": int(counters.get("metaFailures", 0)),
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
            "learners": int(fast_count),
            "learnerIds": sorted(fast_sample or []),
        },
        "outage": outage,
    }
