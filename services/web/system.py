"""The population target and onboarding switches, kept in Redis (`keys.scale`).

Fields of the hash: `target` (learners, integer), `hold` and `paused` ("0"/"1"). The training
service's onboarding task reads them each tick (services/training/onboarding.py) and moves the
population toward the target in bounded batches: with `hold`, it deactivates the newest learners
beyond the target (the throttle, rollback level 1); below it, it reactivates the inactive ones,
then creates learners. A request only records the target and answers at once with the counts.
Web is the hash's only writer. Every change also appends a `settings_changed` event (with its
actor) to the system stream, in the same MULTI/EXEC as the change, so the stream never shows a
change that did not happen (nor misses one that did).
"""

from __future__ import annotations

from typing import Any

from shared.clock import now_ms
from shared.events import SystemEvent
from shared.fleet_totals import population
from shared.keys import Keys
from shared.redis_types import FleetRedis, field_map, text_or_none

SERVICE = "web"


def _flag(value: str | None) -> bool:
    return value == "1"


async def read_scale(redis: FleetRedis, keys: Keys) -> dict[str, Any]:
    """{target (None until set), hold, paused, learners (the population), active, inactive}."""
    target, hold, paused = (
        text_or_none(x) for x in await redis.hmget(keys.scale, ["target", "hold", "paused"])
    )
    pop = await population(redis, keys)  # sums of the shards' indexes: one round trip
    return {
        "target": int(target) if target not in (None, "") else None,
        "hold": _flag(hold),
        "paused": _flag(paused),
        "learners": pop.learners,
        "active": pop.active,
        "inactive": pop.inactive,
    }


async def rename_untagged(redis: FleetRedis, keys: Keys) -> None:
    """A Redis initialised before the scale hash shared the `{system}` tag keeps its target and
    switches: RENAMENX moves the old key unless the new one exists (idempotent; web replicas
    starting together each try, one wins). The old name can only exist on a single Redis (the
    fleet never ran on a Cluster with it), where a rename across slots is no concern."""
    if await redis.exists(keys.scale_untagged):
        await redis.renamenx(keys.scale_untagged, keys.scale)


async def _change(
    redis: FleetRedis, keys: Keys, fields: dict[str, str], setting: str, actor: str | None
) -> None:
    extra = {"setting": setting, **fields}
    if actor is not None:
        extra["actor"] = actor
    event = SystemEvent(type="settings_changed", service=SERVICE, ts=now_ms(), extra=extra)
    # MULTI/EXEC: the hash update and its event are applied together or not at all.
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.scale, mapping=field_map(fields))
        # Not capped by length: trimmed by its consumers' progress (shared/stream_trim.py).
        pipe.xadd(keys.stream_system, field_map(event.to_fields()))
        await pipe.execute()


async def set_scale(
    redis: FleetRedis, keys: Keys, learners: int, hold: bool, actor: str | None = None
) -> dict[str, Any]:
    fields = {"target": str(learners), "hold": "1" if hold else "0"}
    await _change(redis, keys, fields, "scale", actor)
    return await read_scale(redis, keys)


async def set_paused(
    redis: FleetRedis, keys: Keys, paused: bool, actor: str | None = None
) -> dict[str, Any]:
    await _change(redis, keys, {"paused": "1" if paused else "0"}, "onboarding", actor)
    return await read_scale(redis, keys)


def scale_record(
    before: dict[str, Any], after: dict[str, Any], actor: str, at_ms: int, at_iso: str
) -> dict[str, Any]:
    """The decision record's entry for a scale change: a throttle (hold, target below the active
    population) is rollback level 1."""
    target = after["target"]
    throttle = bool(after["hold"]) and target is not None and target < before["active"]
    return {
        "type": "throttle" if throttle else "scale",
        "gate": None,
        "rollback_level": 1 if throttle else None,
        "at": at_iso,
        "ms": at_ms,
        "actor": actor,
        "target": target,
        "hold": after["hold"],
        "active": after["active"],
        "inactive": after["inactive"],
        "learners": after["learners"],
    }
