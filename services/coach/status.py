"""The coach's status document (`GET /api/v1/auto-coach/status`): the whole service's figures,
read from Redis (the same on every replica: counters, throughput, coverage and queue sizes summed
over the shards), and the part of the replica that answered (`replica`: its shards)."""

from __future__ import annotations

from typing import Any

import orjson

from services.coach.settings_store import CoachSettings
from services.coach.store import (
    ACTIVE,
    FASTLANE_LIST,
    FASTLANE_SAMPLE,
    LAST_ACTION,
    LAST_ACTION_AT,
    LAST_META_ACTION,
    LAST_STATUS,
    OUTAGE_SERVICES,
    THROUGHPUT_WINDOW_S,
    CoachStore,
    CounterName,
    FastLaneMembers,
)


def _json(raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def live_values(settings: CoachSettings) -> dict[str, Any]:
    return {
        "intervalMs": settings.live_interval_ms,
        "microBatchesPerTick": settings.live_micro_batches,
        "batchSize": settings.live_batch_size,
        "weight": settings.live_weight,
    }


def fast_lane_summary(settings: CoachSettings, members: FastLaneMembers) -> dict[str, Any]:
    """The fast lane's settings and who is in it: `learners` members (`pinned` in by an
    operator, `automatic` close to readiness), `learnerIds` up to 50 of them, and `excluded`
    (pinned out). GET fast-lane lists the members themselves (`members`)."""
    auto_ids = [x for x, _ in members.auto]
    return {
        **settings.fastLane.model_dump(),
        "learners": members.pinned_count + members.auto_count,
        "learnerIds": sorted({*members.pinned, *auto_ids})[:FASTLANE_SAMPLE],
        "pinned": members.pinned_count,
        "automatic": members.auto_count,
        "excluded": members.excluded_count,
    }


def fast_lane_members(settings: CoachSettings, members: FastLaneMembers) -> dict[str, Any]:
    """GET fast-lane's `members`: up to 500 of each kind; an automatic member shows when it
    entered and when its window lapses (`since`, `until`, epoch ms)."""
    window_ms = settings.fastLane.windowS * 1000
    return {
        "pinned": members.pinned,
        "automatic": [
            {"learner": x, "since": since, "until": since + window_ms} for x, since in members.auto
        ],
        "excluded": members.excluded,
        "listedMax": FASTLANE_LIST,
    }


async def build_status(
    store: CoachStore,
    *,
    instance: str,
    owned: frozenset[int],
    reading: frozenset[int] = frozenset(),
    tokens: dict[int, int | None] | None = None,
    settings: CoachSettings | None = None,
) -> dict[str, Any]:
    """The status document of docs/ARCHITECTURE.md §3 (coach), plus the dashboard's names
    `throughput_rounds_per_min` and `meta_trigger_delay_ms` (the p99)."""
    settings = settings or await store.load_settings()
    status = await store.read_status()
    members = await store.fast_lane_members(settings.fastLane.windowS)
    per_min = await store.rounds_per_min()
    cover = await store.coverage()
    delays = await store.meta_delays()
    state = status.state
    meta_count = status.counter(CounterName.META_TRIGGERS)
    return {
        "active": status.active,
        # Whether anyone (pre-arm's first run, an operator) has started or stopped the coach:
        # pre-arm applies its defaults only to a coach never configured.
        "configured": ACTIVE in state,
        # Whether this replica coaches (owns a shard); one that owns none stands by.
        "leader": bool(owned),
        "instance": instance,
        "replicas": status.replicas,
        "shards": store.keys.shards,
        "replica": {
            "instance": instance,
            "ownedShards": sorted(owned),
            # The fencing token of each owned shard: the writes of this tenure carry it.
            "fences": {str(s): t for s, t in sorted((tokens or {}).items())},
            "metaStreamsRead": sorted(reading),
        },
        "roundsRun": status.counter(CounterName.ROUNDS_RUN),
        "boostRounds": status.counter(CounterName.BOOST_ROUNDS),
        "ticks": status.counter(CounterName.TICKS),
        "learnerErrors": status.counter(CounterName.LEARNER_ERRORS),
        "throughput": {"roundsPerMin": per_min, "windowS": THROUGHPUT_WINDOW_S},
        "throughput_rounds_per_min": per_min,
        "learnersNeedingCoaching": cover["needing"],
        "learnersReady": status.ready,
        "coverage": cover["ratio"],
        "coverageDetail": cover,
        "metaTriggered": meta_count > 0,
        "metaTrigger": {
            "count": meta_count,
            "failures": status.counter(CounterName.META_FAILURES),
            "delayMs": {"p50": delays["p50"], "p99": delays["p99"], "last": delays["last"]},
            "samples": delays["samples"],
        },
        "meta_trigger_delay_ms": delays["p99"],
        "lastAction": state.get(LAST_ACTION, "idle"),
        "lastActionAt": int(state[LAST_ACTION_AT]) if state.get(LAST_ACTION_AT) else None,
        "lastStatus": _json(state.get(LAST_STATUS)),
        "lastMetaAction": state.get(LAST_META_ACTION),
        "thresholds": settings.thresholds(),
        "live": live_values(settings),
        "fastLane": fast_lane_summary(settings, members),
        "outage": {service: _json(status.outage(service)) for service in OUTAGE_SERVICES},
        # The newest completed boosts ({at_ms, rounds, ms}): the Phase 3 gate judges them.
        "boosts": await store.recent_boosts(10),
    }
