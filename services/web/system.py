"""The population target and onboarding switches, kept in Redis (`keys.scale`).

Fields of the hash: `target` (learners, integer), `hold` and `paused` ("0"/"1"). The training
service's onboarding task reads them each tick; web is their only writer. Every change also
appends a `settings_changed` event to the system stream, in the same MULTI/EXEC as the change,
so the stream never shows a change that did not happen (nor misses one that did).
"""

from __future__ import annotations

from typing import Any

from shared.clock import now_ms
from shared.events import SystemEvent
from shared.fleet_totals import learner_count
from shared.keys import Keys
from shared.redis_types import FleetRedis, field_map, text_or_none

SERVICE = "web"


def _flag(value: str | None) -> bool:
    return value == "1"


async def read_scale(redis: FleetRedis, keys: Keys) -> dict[str, Any]:
    """{target (None until set), hold, paused, learners (current population)}."""
    target, hold, paused = (
        text_or_none(x) for x in await redis.hmget(keys.scale, ["target", "hold", "paused"])
    )
    learners = await learner_count(redis, keys)  # the sum of the shards' indexes
    return {
        "target": int(target) if target not in (None, "") else None,
        "hold": _flag(hold),
        "paused": _flag(paused),
        "learners": int(learners),
    }


async def rename_untagged(redis: FleetRedis, keys: Keys) -> None:
    """A Redis initialised before the scale hash shared the `{system}` tag keeps its target and
    switches: RENAMENX moves the old key unless the new one exists (idempotent; web replicas
    starting together each try, one wins). The old name can only exist on a single Redis (the
    fleet never ran on a Cluster with it), where a rename across slots is no concern."""
    if await redis.exists(keys.scale_untagged):
        await redis.renamenx(keys.scale_untagged, keys.scale)


async def _change(redis: FleetRedis, keys: Keys, fields: dict[str, str], setting: str) -> None:
    event = SystemEvent(
        type="settings_changed", service=SERVICE, ts=now_ms(), extra={"setting": setting, **fields}
    )
    # MULTI/EXEC: the hash update and its event are applied together or not at all.
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.scale, mapping=field_map(fields))
        # Not capped by length: trimmed by its consumers' progress (shared/stream_trim.py).
        pipe.xadd(keys.stream_system, field_map(event.to_fields()))
        await pipe.execute()


async def set_scale(redis: FleetRedis, keys: Keys, learners: int, hold: bool) -> dict[str, Any]:
    await _change(redis, keys, {"target": str(learners), "hold": "1" if hold else "0"}, "scale")
    return await read_scale(redis, keys)


async def set_paused(redis: FleetRedis, keys: Keys, paused: bool) -> dict[str, Any]:
    await _change(redis, keys, {"paused": "1" if paused else "0"}, "onboarding")
    return await read_scale(redis, keys)
