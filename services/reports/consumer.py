"""The reports consumer: reads each shard's rounds and meta streams and the system stream
through the consumer group `reports` (one group per stream) and applies each batch with the
atomic apply script, one call per stream (one slot).

Which shards: those of a `ShardOwnership` (shared/shards.py), asked at the start of every
pass, so ownership may change while the consumer runs. Several reports replicas split the
shards that way; the system stream (a few entries a minute) is read by every replica, its group
handing each entry to one of them.
- a shard lost: its streams are no longer read. Entries of it that this consumer was given and
  has not applied stay pending in the group, for the shard's new owner to claim;
- a shard gained: its pending entries, whoever they were delivered to, are first claimed from
  the group (XAUTOCLAIM with no idle time), so the pass that follows applies them before any new
  entry of the shard is read.

Order of work in every pass (bounded: COUNT ≤ 1000 per stream, one pipelined XREADGROUP per
shard, both of its streams in one call since they share the shard's hash tag):
1. this consumer's own pending entries (delivered earlier but not applied: a previous
   incarnation was killed between read and apply, an apply failed, a gained shard's claimed
   entries): re-read with id 0 and applied first;
2. when none are pending, new entries (`>`); when nothing came, the consumer sleeps briefly.
Every ~10 s entries of the owned streams idle for 30 s with other consumers (a replica that
died, an instance that ran under another name) are XAUTOCLAIMed too.
Whether an entry is counted is decided inside the apply script (still pending → apply + ack;
already acknowledged → skip), whoever applies it, so redeliveries, claims and two replicas that
both believe they own a shard for a moment never double-count.

The consumer also samples fleet-wide gauges (learners, regions, coach throughput) into the
current minute's `{system}` hash, so the time series have a learners line.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from services.reports.aggregates import RETENTION_S, minute_of
from services.reports.apply import GROUP, ApplyResult, Entry, apply_script, build_call
from services.reports.queries import coach_throughput, needing_coaching
from shared.cancellation import stop_if_cancelled
from shared.events import (
    COACH_META_GROUP,
    StreamRef,
    fleet_streams,
    shard_streams,
    system_stream,
)
from shared.fleet_totals import read_totals
from shared.keys import Keys
from shared.logging import get_logger
from shared.redis_types import FleetRedis, texts
from shared.scripts import ScriptCall, evalsha_pipelined
from shared.shards import AllShards, ShardOwnership
from shared.stream_trim import TrimResult, trim_script, trim_stream

log = get_logger(__name__)

BATCH = 1000
IDLE_S = 0.2  # pause after a pass that found nothing new (the reads do not block: see run)
CLAIM_EVERY_S = 10.0
CLAIM_MIN_IDLE_MS = 30_000
CLAIM_PAGES = 100  # pages of BATCH entries one XAUTOCLAIM walk may take per stream
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
    claimed: int = 0
    owned: frozenset[int] = frozenset()
    last_error: str | None = None
    started_at: float = field(default_factory=time.time)


async def _create_groups(redis: FleetRedis, streams: Sequence[str], group: str) -> None:
    """Create `group` at id 0 on each stream (MKSTREAM: it may not exist yet), one pipelined
    round trip; an existing group (BUSYGROUP) is left as it is."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xgroup_create(stream, group, id="0", mkstream=True)
        replies = await pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
            raise reply


async def ensure_groups(redis: FleetRedis, keys: Keys) -> None:
    """Create the group on every stream of the fleet (every shard's, whoever owns it) at id 0,
    so history written before reports first started is counted too, and so the trimmer never
    finds a stream without the group whose progress must bound it."""
    await _create_groups(redis, [ref.key for ref in fleet_streams(keys)], GROUP)


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
    def __init__(
        self,
        redis: FleetRedis,
        keys: Keys,
        name: str,
        ownership: ShardOwnership | None = None,
        *,
        idle_s: float = IDLE_S,
    ) -> None:
        self.redis = redis
        self.apply_script: AsyncScript = apply_script(redis)
        self.keys = keys
        self.ownership: ShardOwnership = ownership if ownership is not None else AllShards(keys)
        self.state = ConsumerState(name)
        self.system = system_stream(keys)
        self.refs = {ref.key: ref for ref in fleet_streams(keys)}
        self.idle_s = idle_s
        self._owned: set[int] = set()
        self._last_claim = 0.0
        self._last_sample = 0.0
        self._last_trim = 0.0

    async def run(self) -> None:
        await ensure_groups(self.redis, self.keys)
        # Loaded now, so the first batch does not pay for a NOSCRIPT round trip.
        self.apply_script.sha = await self.redis.script_load(self.apply_script.script)
        self.state.running = True
        try:
            while True:  # bounded by task cancellation at shutdown; each pass is bounded
                stop_if_cancelled()
                try:
                    applied = await self.run_once()
                    await self.housekeeping()
                    self.state.last_error = None
                    if applied == 0:
                        await asyncio.sleep(self.idle_s)
                except asyncio.CancelledError:
                    raise
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):  # stream deleted (e.g. FLUSHDB): recreate
                        await ensure_groups(self.redis, self.keys)
                    else:
                        self._failed(exc)
                        await asyncio.sleep(0.5)
                except Exception as exc:
                    stop_if_cancelled(exc)
                    self._failed(exc)
                    await asyncio.sleep(0.5)
        finally:
            self.state.running = False

    def _failed(self, exc: Exception) -> None:
        self.state.last_error = f"{exc.__class__.__name__}: {exc}"
        log.warning("reports_consumer_error", error=self.state.last_error)

    # ---- ownership ---------------------------------------------------------------------------
    async def follow_ownership(self) -> None:
        """Take the ownership's current shards: drop the lost ones, claim the gained ones'
        pending entries before reading them. A shard whose claim fails is not taken this pass
        (the next pass claims it again), so a gained shard is never read past its pending
        entries."""
        now = self.ownership.owned()
        lost = self._owned - now
        if lost:
            self._owned -= lost
            log.info("reports_shards_lost", shards=sorted(lost))
        gained = sorted(now - self._owned)
        for shard in gained:
            for ref in shard_streams(self.keys, shard):
                self.state.claimed += await self.claim(ref.key, min_idle_ms=0)
            self._owned.add(shard)
        if gained:
            log.info("reports_shards_gained", shards=gained)
        self.state.owned = frozenset(self._owned)

    def owned_streams(self) -> list[list[StreamRef]]:
        """The streams this consumer reads, grouped by slot: each owned shard's two, and the
        system stream on its own."""
        return [shard_streams(self.keys, s) for s in sorted(self._owned)] + [[self.system]]

    # ---- one pass ----------------------------------------------------------------------------
    async def run_once(self) -> int:
        """One pass: own pending entries first, else new ones. Returns entries applied."""
        await self.follow_ownership()
        groups = self.owned_streams()
        batches = await self._read(groups, "0")
        if not batches:
            batches = await self._read(groups, ">")
        results = await self._apply(batches)
        applied = sum(r.applied for r in results)
        self.state.applied += applied
        self.state.skipped += sum(r.skipped for r in results)
        return applied

    async def _read(self, groups: list[list[StreamRef]], start: str) -> dict[str, list[Entry]]:
        """One XREADGROUP per slot (never blocking), pipelined: {stream key: entries}."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for group in groups:
                pipe.xreadgroup(
                    GROUP, self.state.name, {ref.key: start for ref in group}, count=BATCH
                )
            replies = await pipe.execute()
        out: dict[str, list[Entry]] = {}
        for reply in replies:
            out.update({s: e for s, e in _entries(reply).items() if e})
        return out

    async def _apply(self, batches: dict[str, list[Entry]]) -> list[ApplyResult]:
        """One apply script run per stream, pipelined (each run is atomic on its own slot)."""
        calls: list[ScriptCall] = [
            build_call(self.keys, self.refs[stream], entries) for stream, entries in batches.items()
        ]

        replies = await evalsha_pipelined(self.redis, self.apply_script, calls)
        return [ApplyResult(int(r[0]), int(r[1])) for r in replies]

    async def drain(self, max_passes: int = 100) -> int:
        """Apply until nothing is left (bounded): a test's way to wait for the consumer to catch up."""
        total = 0
        for _ in range(max_passes):
            applied = await self.run_once()
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

    async def claim(self, stream: str, min_idle_ms: int) -> int:
        """Take over the group's entries of `stream` idle for min_idle_ms, whoever holds them
        (bounded pages); they become this consumer's pending entries, applied by the next
        pass."""
        claimed = 0
        start = "0-0"
        for _ in range(CLAIM_PAGES):
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
        return claimed

    async def claim_stale(self, min_idle_ms: int = CLAIM_MIN_IDLE_MS) -> int:
        """Take over other consumers' entries of the owned streams idle for min_idle_ms."""
        claimed = 0
        for group in self.owned_streams():
            for ref in group:
                claimed += await self.claim(ref.key, min_idle_ms)
        if claimed:
            self.state.claimed += claimed
            log.info("reports_claimed_stale", entries=claimed)
        return claimed


async def sample_gauges(redis: FleetRedis, keys: Keys, now_ms: int) -> None:
    """Write the current learner count, region count and coach throughput into this minute's
    `{system}` hash (fleet-wide figures: sums over the shards); the value at the end of a
    minute is the minute's sample. Every replica may write it: they write the same figures."""
    pop = await read_totals(redis, keys, rounds=False)
    tput = await coach_throughput(redis, keys, now_ms)
    # The queue's size: the gates judge throughput only over minutes with demand.
    needing = await needing_coaching(redis, keys)
    minute = keys.reports_system_minute(minute_of(now_ms))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(
            minute,
            mapping={
                "learners": pop.learners,
                "regions": sum(1 for n in pop.regions.values() if n > 0),
                "coach_tput": tput,
                "needing": needing,
            },
        )
        pipe.expire(minute, RETENTION_S)
        await pipe.execute()


async def trim_transitions(redis: FleetRedis, keys: Keys, now_ms: int) -> None:
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
    reports every `TOOLOO_STREAM_TRIM_INTERVAL`: the rounds and meta streams of the shards this
    replica owns, and the system stream; one script call per stream (one key, one slot).
    Reports runs it because its group is on every stream: it is the reader whose progress
    decides what may go, and the one process that has to run anyway for the streams to drain.
    Safe with several replicas, and with two that both believe they own a shard (one atomic
    script per stream, trimming only below every group's floor). A shard nobody owns is not
    trimmed, which is what its reports group's floor would allow anyway."""

    def __init__(
        self,
        redis: FleetRedis,
        keys: Keys,
        *,
        cap: int,
        retention_ms: int = 0,
        ownership: ShardOwnership | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.script = trim_script(redis)
        self.ownership: ShardOwnership = ownership if ownership is not None else AllShards(keys)
        self.cap = cap
        self.retention_ms = retention_ms

    def streams(self) -> list[str]:
        owned = sorted(self.ownership.owned())
        return [ref.key for s in owned for ref in shard_streams(self.keys, s)] + [
            self.keys.stream_system
        ]

    async def ensure_groups(self) -> None:
        """The groups whose progress bounds the trim exist before the first trim, so a stream
        is never taken for group-less (and capped) just because its readers have not started:
        reports' own groups, and the coach's on every shard's meta stream (created at 0, as the
        coach does itself, so ready events written before any coach started are kept for it)."""
        await ensure_groups(self.redis, self.keys)
        await _create_groups(
            self.redis, [self.keys.stream_meta(s) for s in self.keys.all_shards()], COACH_META_GROUP
        )

    async def run_once(self) -> list[TrimResult]:
        await self.ensure_groups()
        results = [
            await trim_stream(self.script, s, cap=self.cap, retention_ms=self.retention_ms)
            for s in self.streams()
        ]
        trimmed = {r.stream: r.trimmed for r in results if r.trimmed}
        if trimmed:
            log.info("streams_trimmed", trimmed=trimmed)
        return results

    async def run(self, interval_s: float) -> None:
        while True:  # bounded by task cancellation at shutdown; one pass per interval
            stop_if_cancelled()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away or refusing: try again next interval
                stop_if_cancelled(exc)
                log.warning("stream_trim_failed", error=f"{exc.__class__.__name__}: {exc}")
            await asyncio.sleep(interval_s)
