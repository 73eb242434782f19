"""The reports consumer: reads the rounds, meta and system streams through the consumer group
`reports` and applies each batch with the atomic apply script.

Order of work in every pass (each pass is bounded: COUNT ≤ 1000 per stream, BLOCK ≤ 1000 ms):
1. this consumer's own pending entries (delivered earlier but not applied — a previous incarnation
   of this instance was killed between read and apply, or an apply failed): re-read with id 0 and
   applied first;
2. when none are pending, new entries (`>`), blocking up to a second.
Every ~10 s stale entries of other consumers of the group (a replica that died, an instance
that ran under another name) are XAUTOCLAIMed, so they become our pending entries and pass 1
applies them. Whether an entry is counted is decided inside the apply script (still pending →
apply + ack; already acknowledged → skip), so redeliveries and claims never double-count.

The consumer also samples gauges (learners, regions, coach throughput) into the current minute's
hash, so the time series have a learners line.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.reports.aggregates import RETENTION_S, STREAM_KINDS, minute_of
from services.reports.apply import GROUP, Entry, apply_entries, apply_script, stream_key
from services.reports.queries import coach_throughput
from shared.events import COACH_META_GROUP
from shared.keys import Keys
from shared.logging import get_logger
from shared.redis_types import texts
from shared.stream_trim import TrimResult, trim_script, trim_stream

log = get_logger(__name__)

BATCH = 1000
BLOCK_MS = 1000
CLAIM_EVERY_S = 10.0
CLAIM_MIN_IDLE_MS = 30_000
SAMPLE_EVERY_S = 5.0
TRIM_EVERY_S = 600.0


def consumer_name(port: int, replica: str | None = None) -> str:
    """Stable across restarts of the same instance, so a restarted reports finds its own pending
    entries at once (XREADGROUP id 0) instead of waiting for them to go stale. Replicas behind
    one port are told apart by the replica name the orchestrator gives them (`reports#2`, the
    same across restarts), or each would read the others' pending entries as its own."""
    return f"{socket.gethostname()}:{port}" + (f":{replica}" if replica else "")


@dataclass
class ConsumerState:
    name: str
    running: bool = False
    applied: int = 0
    skipped: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.time)


async def ensure_groups(redis: Redis, keys: Keys) -> None:
    """Create the group on each stream at id 0, so history written before reports first started
    is counted too (MKSTREAM: the stream may not exist yet)."""
    for kind in STREAM_KINDS:
        try:
            await redis.xgroup_create(stream_key(keys, kind), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def _entries(reply: Any) -> dict[str, list[Entry]]:
    """{stream key: [(id, fields or None)]} from an XREADGROUP reply (list or RESP3 dict)."""
    out: dict[str, list[Entry]] = {}
    items = reply.items() if isinstance(reply, dict) else (reply or [])
    for item in items:
        stream, entries = item[0], item[1]
        if isinstance(entries, list) and entries and isinstance(entries[0], list):
            entries = entries[0]  # RESP3 shape: [[entries]]
        out[stream] = [(eid, fields or None) for eid, fields in entries]
    return out


class ReportsConsumer:
    def __init__(self, redis: Redis, keys: Keys, name: str) -> None:
        self.redis = redis
        self.apply_script = apply_script(redis)
        self.keys = keys
        self.state = ConsumerState(name)
        self.kind_of = {stream_key(keys, kind): kind for kind in STREAM_KINDS}
        self._last_claim = 0.0
        self._last_sample = 0.0
        self._last_trim = 0.0

    async def run(self) -> None:
        await ensure_groups(self.redis, self.keys)
        # Loaded now, so the first batch does not pay for a NOSCRIPT round trip.
        self.apply_script.sha = await self.redis.script_load(self.apply_script.script)
        self.state.running = True
        try:
            while True:  # bounded by task cancellation at shutdown; each pass blocks ≤ 1 s
                try:
                    await self.run_once()
                    await self.housekeeping()
                    self.state.last_error = None
                except asyncio.CancelledError:
                    raise
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):  # stream deleted (e.g. FLUSHDB): recreate
                        await ensure_groups(self.redis, self.keys)
                    else:
                        self._failed(exc)
                        await asyncio.sleep(0.5)
                except Exception as exc:
                    self._failed(exc)
                    await asyncio.sleep(0.5)
        finally:
            self.state.running = False

    def _failed(self, exc: Exception) -> None:
        self.state.last_error = f"{exc.__class__.__name__}: {exc}"
        log.warning("reports_consumer_error", error=self.state.last_error)

    async def run_once(self, block_ms: int = BLOCK_MS) -> int:
        """One pass: own pending entries first, else new ones. Returns entries applied."""
        streams = list(self.kind_of)
        pending = await self.redis.xreadgroup(
            GROUP, self.state.name, dict.fromkeys(streams, "0"), count=BATCH
        )
        batches = {s: e for s, e in _entries(pending).items() if e}
        if not batches:
            fresh = await self.redis.xreadgroup(
                GROUP, self.state.name, dict.fromkeys(streams, ">"), count=BATCH, block=block_ms
            )
            batches = {s: e for s, e in _entries(fresh).items() if e}
        applied = 0
        for stream, entries in batches.items():
            result = await apply_entries(
                self.apply_script, self.keys, self.kind_of[stream], entries
            )
            applied += result.applied
            self.state.applied += result.applied
            self.state.skipped += result.skipped
        return applied

    async def drain(self, max_passes: int = 100) -> int:
        """Apply until nothing is left (bounded): a test's way to wait for the consumer to catch up."""
        total = 0
        for _ in range(max_passes):
            applied = await self.run_once(block_ms=1)
            total += applied
            if applied == 0:
                break
        return total

    async def housekeeping(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if now - self._last_claim >= CLAIM_EVERY_S:
            self._last_claim = now
            await self.claim_stale()
        if now - self._last_sample >= SAMPLE_EVERY_S:
            self._last_sample = now
            await sample_gauges(self.redis, self.keys, int(now * 1000))
        if now - self._last_trim >= TRIM_EVERY_S:
            self._last_trim = now
            await trim_transitions(self.redis, self.keys, int(now * 1000))

    async def claim_stale(self, min_idle_ms: int = CLAIM_MIN_IDLE_MS) -> int:
        """Take over other consumers' entries idle for min_idle_ms (bounded pages)."""
        claimed = 0
        for stream in self.kind_of:
            start = "0-0"
            for _ in range(100):
                reply = await self.redis.xautoclaim(
                    stream,
                    GROUP,
                    self.state.name,
                    min_idle_time=min_idle_ms,
                    start_id=start,
                    count=BATCH,
                )
                # Not JUSTID: redis-py drops the next-start cursor from a JUSTID reply.
                start, entries = reply[0], reply[1]
                claimed += len(entries)
                if start in ("0-0", b"0-0"):
                    break
        if claimed:
            log.info("reports_claimed_stale", entries=claimed)
        return claimed


async def sample_gauges(redis: Redis, keys: Keys, now_ms: int) -> None:
    """Write the current learner count, region count and coach throughput into this minute's
    hash; the value at the end of a minute is the minute's sample."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.learners_index)
        pipe.hlen(keys.learners_regions)
        learners, regions = await pipe.execute()
    tput = await coach_throughput(redis, keys, now_ms)
    minute = keys.reports_minute(minute_of(now_ms))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(
            minute,
            mapping={"learners": int(learners), "regions": int(regions), "coach_tput": tput},
        )
        pipe.expire(minute, RETENTION_S)
        await pipe.execute()


async def trim_transitions(redis: Redis, keys: Keys, now_ms: int) -> None:
    """Drop service up/down transitions older than the retention, except the newest of them: it
    is the service's state at the start of the longest window."""
    services = texts(await redis.hkeys(keys.reports_service_last))[:1000]
    cutoff = now_ms - RETENTION_S * 1000
    async with redis.pipeline(transaction=False) as pipe:
        for service in services:
            pipe.zcount(keys.reports_service(service), "-inf", cutoff)
        counts = await pipe.execute()
    async with redis.pipeline(transaction=False) as pipe:
        for service, old in zip(services, counts, strict=True):
            if int(old) > 1:
                pipe.zremrangebyrank(keys.reports_service(service), 0, int(old) - 2)
        await pipe.execute()


class StreamTrimmer:
    """Trims the fleet's streams by their consumers' progress (shared/stream_trim.py), run by
    reports every `TOOLOO_STREAM_TRIM_INTERVAL`. Reports runs it because its group is on every
    stream: it is the reader whose progress decides what may go, and the one process that has
    to run anyway for the streams to drain. Safe with several replicas (one atomic script per
    stream, trimming only below every group's floor). A reports replica that is down trims
    nothing, which is what its own group's floor would allow anyway."""

    def __init__(self, redis: Redis, keys: Keys, *, cap: int, retention_ms: int = 0) -> None:
        self.redis = redis
        self.keys = keys
        self.script = trim_script(redis)
        self.streams = [stream_key(keys, kind) for kind in STREAM_KINDS]
        self.cap = cap
        self.retention_ms = retention_ms

    async def ensure_groups(self) -> None:
        """The groups whose progress bounds the trim exist before the first trim, so a stream
        is never taken for group-less (and capped) just because its readers have not started:
        reports' own groups, and the coach's on the meta stream (created at 0, as the coach
        does itself, so ready events written before any coach started are kept for it)."""
        await ensure_groups(self.redis, self.keys)
        try:
            await self.redis.xgroup_create(
                self.keys.stream_meta, COACH_META_GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run_once(self) -> list[TrimResult]:
        await self.ensure_groups()
        results = [
            await trim_stream(self.script, s, cap=self.cap, retention_ms=self.retention_ms)
            for s in self.streams
        ]
        trimmed = {r.stream: r.trimmed for r in results if r.trimmed}
        if trimmed:
            log.info("streams_trimmed", trimmed=trimmed)
        return results

    async def run(self, interval_s: float) -> None:
        while True:  # bounded by task cancellation at shutdown; one pass per interval
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away or refusing: try again next interval
                log.warning("stream_trim_failed", error=f"{exc.__class__.__name__}: {exc}")
            await asyncio.sleep(interval_s)
