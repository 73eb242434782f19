"""Claiming an Idempotency-Key for one request, before any of its work is done."""

from __future__ import annotations

from shared.commit_rounds import IDEMPOTENCY_TTL_MS
from shared.domain_errors import IdempotencyKeyReused
from shared.redis_types import FleetRedis, text_or_none


async def claim(redis: FleetRedis, key: str, request_hash: str) -> None:
    """Tie the Redis key `key` to `request_hash` for the idempotency TTL (SET NX, then read:
    whichever request set it first owns it); raise IdempotencyKeyReused when another request
    holds it. Not atomic with the work it guards and need not be: it only ever refuses, before
    the request has done anything."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(key, request_hash, nx=True, px=IDEMPOTENCY_TTL_MS)
        pipe.get(key)
        _, held = await pipe.execute()
    if text_or_none(held) not in (None, request_hash):
        raise IdempotencyKeyReused()
