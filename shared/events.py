"""Appending to the fleet's event streams (`…:events:system` and friends)."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from shared.keys import Keys

STREAM_MAXLEN = 100_000


async def emit_system_event(
    redis: Redis, keys: Keys, *, service: str, kind: str, **fields: Any
) -> str:
    """Append one event (start, exit, restart, prearm step, settings change, …)."""
    entry: dict[str, Any] = {"type": kind, "service": service, "ts": int(time.time() * 1000)}
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        entry[name] = value if isinstance(value, str | int | float) else str(value)
    return await redis.xadd(keys.stream_system, entry, maxlen=STREAM_MAXLEN, approximate=True)
