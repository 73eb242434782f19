"""Trimming a stream by its consumers' progress, and each consumer group's lag.

`XADD … MAXLEN` trims by length and ignores consumer groups, so a group that falls behind (a
reports service stopped for a while) silently loses the entries it has not read: the review
measured 2,500 rounds committed and 1,083 counted. So no writer caps its XADD; instead
`trim_stream` (the `stream_trim` script, shared/lua/) deletes only entries below what every
group of the stream has acknowledged, and caps by length only a stream that has no group at all.
It takes one stream key per call (a script touches one key: on a Redis Cluster it runs on that
stream's node), so every shard's streams are trimmed each on its own.
Acknowledged entries younger than `retention_ms` are kept as well: the streams are also the
fleet's recent event log (`XRANGE …:events:system` when something went wrong a minute ago).

Who runs it: the reports service, every `TOOLOO_STREAM_TRIM_INTERVAL` seconds, for the rounds
and meta streams of the shards the replica consumes, and the system stream (see
services/reports/consumer.py, `StreamTrimmer`). Running it from several replicas (or any other
process) at once is safe: each run is one atomic script and only ever trims below the groups'
current floor, so two runs trim at most what one would.

`group_lags` measures each group's lag (entries not yet delivered plus delivered but not
acknowledged) without relying on XINFO's `lag` field, which Redis < 7 does not have and Redis 7
leaves nil after some deletions: it counts the entries after the group's last-delivered id,
bounded by `scan_limit` (past the bound the lag is reported as at least that, `exact: false`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from shared.redis_types import FleetRedis, text
from shared.scripts import script_source

TRIM_LIMIT = 100_000  # most entries one trim call evicts: bounds the time it holds Redis
LAG_SCAN_LIMIT = 10_000  # most entries read to count a group's undelivered entries


@dataclass(frozen=True, slots=True)
class TrimResult:
    stream: str
    trimmed: int
    groups: int
    floor: str | None  # the lowest id every group still needs (None: capped by length)


def trim_script(redis: FleetRedis) -> AsyncScript:
    """The `stream_trim` script registered on `redis` (called by SHA, reloaded on NOSCRIPT)."""
    return redis.register_script(script_source("stream_trim"))


async def trim_stream(
    script: AsyncScript, stream: str, *, cap: int, retention_ms: int = 0, limit: int = TRIM_LIMIT
) -> TrimResult:
    """Trim `stream` below what all its groups have acknowledged and below now - retention_ms,
    or to about `cap` entries when it has no group. Never deletes an entry a group has not been
    given or has not acknowledged."""
    trimmed, groups, floor = await script(keys=[stream], args=[cap, limit, retention_ms])
    return TrimResult(stream, int(trimmed), int(groups), text(floor) or None)


@dataclass(frozen=True, slots=True)
class GroupLag:
    group: str
    pending: int  # delivered, not yet acknowledged
    undelivered: int  # after the last-delivered id
    lag: int  # pending + undelivered
    exact: bool  # False when undelivered was only counted up to the scan limit
    last_delivered_id: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _count_after(
    redis: FleetRedis, stream: str, after: str, scan_limit: int
) -> tuple[int, bool]:
    """Entries with an id above `after`, counted up to `scan_limit` (and whether exactly)."""
    start = f"({after}" if after not in ("", "0-0") else "-"
    entries = await redis.xrange(stream, start, "+", count=scan_limit)
    # redis-py types XRANGE's reply as Optional; Redis answers an array, empty at worst.
    n = len(entries or [])
    return n, n < scan_limit


async def group_lags(
    redis: FleetRedis, stream: str, *, scan_limit: int = LAG_SCAN_LIMIT
) -> list[GroupLag]:
    """Each group's lag on `stream` ([] when the stream does not exist or has no group)."""
    return (await group_lags_many(redis, [stream], scan_limit=scan_limit))[stream]


async def group_lags_many(
    redis: FleetRedis, streams: Sequence[str], *, scan_limit: int = LAG_SCAN_LIMIT
) -> dict[str, list[GroupLag]]:
    """`group_lags` of many streams (every shard's) in one pipelined round trip of XINFO
    GROUPS, one command per stream (each its own key); only a group whose lag Redis cannot
    tell costs a further read."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xinfo_groups(stream)
        replies = await pipe.execute(raise_on_error=False)
    out: dict[str, list[GroupLag]] = {}
    for stream, reply in zip(streams, replies, strict=True):
        if isinstance(reply, ResponseError) and "no such key" in str(reply).lower():
            out[stream] = []
            continue
        if isinstance(reply, Exception):
            raise reply
        out[stream] = [await _group_lag(redis, stream, info, scan_limit) for info in reply]
    return out


async def _group_lag(
    redis: FleetRedis, stream: str, info: dict[str, Any], scan_limit: int
) -> GroupLag:
    last = text(info.get("last-delivered-id") or "0-0")
    pending = int(info.get("pending") or 0)
    lag = info.get("lag")  # Redis >= 7 only, and nil when it cannot tell
    if lag is not None:
        undelivered, exact = int(lag), True
    else:
        undelivered, exact = await _count_after(redis, stream, last, scan_limit)
    return GroupLag(
        group=text(info.get("name")),
        pending=pending,
        undelivered=undelivered,
        lag=pending + undelivered,
        exact=exact,
        last_delivered_id=last,
    )
