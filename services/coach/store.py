"""Redis access of the coach: the one module that knows its keys' hash fields.

- `keys.coach_state` (hash): `active` persists there, so a restarted coach that was active
  resumes on its own and a stop sent to any replica stops the leader's loop; `lastAction`,
  `lastStatus`, `lastMetaAction` and the outages (`outage.<service>`) are written by the leader
  (the loop and the meta trigger), so every replica answers the same status.
- `keys.coach_stats` (hash of counters, HINCRBY), throughput as per-second counters
  (`keys.coach_throughput(sec)`, summed over the last minute), coverage from `keys.coach_coached`
  against the queue, and the meta trigger delays. Everything is in Redis, so the figures survive
  a coach restart and a standby that takes over continues them rather than starting from zero.
- `keys.coach_settings` (one field per setting, see settings_store), the fast-lane members
  (`keys.coach_fastlane`), the queue of learners needing coaching and the reviews waiting in
  `keys.coach_ready` (see scheduler), and the coach's consumer group on `keys.stream_meta`.

Fencing: the leader-only writes (a tick's record, due reviews, the meta trigger's records and
the state notes) carry the lease's fencing token (services/coach/lease.py) and are refused with
`Fenced`, writing nothing, once another replica has acquired the lease since: each is one
MULTI/EXEC that WATCHes `keys.coach_fence` and checks its value first (EXEC aborts if an
acquisition increments it in between), or the promote_due script checking it. Every key they
write shares the fence's `{coach}` hash tag. The meta stream's XACKs follow a fenced record
instead of sitting in it (the stream is not in that slot): a refused leader acknowledges
nothing, so the new leader's claim serves those entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError, WatchError

from services.coach.lease import Fencing
from services.coach.scheduler import Pick, stride
from services.coach.settings_store import CoachSettings, from_fields, merge, to_fields
from services.coach.tick import TickResult
from shared.clock import now_ms
from shared.events import COACH_META_GROUP
from shared.keys import Keys
from shared.logging import get_logger
from shared.percentiles import nearest_rank
from shared.redis_types import field_map, scored, text_map, text_or_none, texts
from shared.scripts import lua_source

log = get_logger(__name__)

# ---- fields of `keys.coach_state` ---------------------------------------------------------------
ACTIVE = "active"
LAST_ACTION = "lastAction"
LAST_ACTION_AT = "lastActionAt"
LAST_STATUS = "lastStatus"
LAST_META_ACTION = "lastMetaAction"
OUTAGE_PREFIX = "outage."
OUTAGE_SERVICES = ("training", "meta")


class CounterName(StrEnum):
    """The fields of `keys.coach_stats`."""

    TICKS = "ticks"
    ROUNDS_RUN = "roundsRun"
    BOOST_ROUNDS = "boostRounds"
    LEARNER_ERRORS = "learnerErrors"
    FAILED_CALLS = "failedCalls"
    META_TRIGGERS = "metaTriggers"
    META_FAILURES = "metaFailures"


THROUGHPUT_WINDOW_S = 60
THROUGHPUT_TTL_S = 120
COVERAGE_WINDOW_MS = 60_000
COVERAGE_SAMPLE = 5000  # coached learners checked against the queue per status call
META_DELAYS_KEPT = 1000
FASTLANE_SAMPLE = 50  # fast-lane members listed by the status
PROMOTE_LIMIT = 1000  # due reviews moved back into the queue per tick (bounded work)
META_GROUP = COACH_META_GROUP  # the coach's consumer group on the meta stream


def action_fields(action: str, at_ms: int | None = None) -> dict[str, str]:
    return {LAST_ACTION: action, LAST_ACTION_AT: str(now_ms() if at_ms is None else at_ms)}


def outage_field(service: str) -> str:
    return OUTAGE_PREFIX + service


def outage_value(since_ms: int, error: str) -> str:
    return orjson.dumps({"since": since_ms, "error": error[:300]}).decode()


class Fenced(Exception):
    """A leader-only write was refused: another replica acquired the lease (a newer fencing
    token exists), or this one holds none. Nothing of the write was applied."""


class UnknownLearners(Exception):
    """Learners asked to join the fast lane that do not exist."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"unknown learners: {missing[:5]}")
        self.missing = missing


@dataclass(frozen=True, slots=True)
class MetaServed:
    """A readiness trigger meta served: its stream entry, and the delay from commit to served."""

    entry_id: str
    learner: str
    round_id: int
    delay_ms: float


@dataclass(frozen=True, slots=True)
class StatusReading:
    """The coach's state and counters as the status document shows them (one round trip)."""

    state: dict[str, str]
    counters: dict[str, str]
    ready: int
    fast_lane_size: int
    fast_lane_sample: list[str]
    leader_instance: str | None

    @property
    def active(self) -> bool:
        return self.state.get(ACTIVE) == "1"

    def counter(self, name: CounterName) -> int:
        return int(self.counters.get(name, 0))

    def outage(self, service: str) -> str | None:
        return self.state.get(outage_field(service))


class CoachStore:
    def __init__(self, redis: Redis, keys: Keys, fencing: Fencing | None = None) -> None:
        """`fencing`: the lease whose token the leader-only writes carry; None writes them
        unfenced (a tool or test that is not a replica of the running coach)."""
        self.redis = redis
        self.keys = keys
        self.fencing = fencing
        self._promote_due = redis.register_script(lua_source(__package__, "promote_due"))
        self._migrate = redis.register_script(lua_source(__package__, "migrate_keys"))

    # ---- fencing and migration -----------------------------------------------------------------
    def _token(self) -> str:
        """The fencing token to check ('' = unfenced store); Fenced when we hold none."""
        if self.fencing is None:
            return ""
        token = self.fencing.fence_token
        if token is None:
            raise Fenced("this replica holds no coach lease")
        return str(token)

    async def _fenced(self, fill: Callable[[Pipeline], object]) -> None:
        """Run the writes `fill` queues as one MULTI/EXEC that applies only while the fence
        still holds our token: WATCH the fence, read it, then MULTI … EXEC; an acquisition in
        between increments the fence and EXEC applies nothing (WatchError)."""
        token = self._token()
        async with self.redis.pipeline(transaction=True) as pipe:
            if token:
                await pipe.watch(self.keys.coach_fence)
                current = text_or_none(await pipe.get(self.keys.coach_fence))
                if current != token:  # the context manager's reset un-WATCHes
                    raise Fenced(f"fencing token {token} is stale (fence is now {current})")
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            fill(pipe)
            try:
                await pipe.execute()
            except WatchError:
                raise Fenced(f"fencing token {token} went stale during the write") from None

    async def migrate_keys(self) -> int:
        """Move coach keys from their names before the `{coach}` tag (idempotent, atomic; see
        migrate_keys.lua). Returns how many were moved; run at start, before anything else."""
        pairs = [name for pair in self.keys.legacy_coach_keys() for name in pair]
        moved = int(await self._migrate(keys=pairs, args=[]))
        if moved:
            log.info("coach_keys_migrated", keys=moved)
        return moved

    # ---- settings ------------------------------------------------------------------------------
    async def load_settings(self) -> CoachSettings:
        parsed = from_fields(text_map(await self.redis.hgetall(self.keys.coach_settings)))
        if parsed.invalid:
            log.warning("coach_settings_invalid_fields", fields=parsed.invalid)
        return parsed.settings

    async def ensure_default_settings(self) -> None:
        """Write every missing field with its default (HSETNX: never overwrites a value someone
        set), so the commit script and operators see explicit thresholds."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, value in to_fields(CoachSettings()).items():
                pipe.hsetnx(self.keys.coach_settings, name, value)
            await pipe.execute()

    async def save_settings(self, current: CoachSettings, new: CoachSettings) -> list[str]:
        """Write the fields that changed (one HSET: the fields of one call land together). Fields
        are independent, so two replicas changing different settings do not lose each other's
        change. Returns the names of the changed fields."""
        old_fields, new_fields = to_fields(current), to_fields(new)
        changed = {k: v for k, v in new_fields.items() if old_fields.get(k) != v}
        if changed:
            await self.redis.hset(self.keys.coach_settings, mapping=field_map(changed))
        return sorted(changed)

    async def update_settings(self, changes: dict[str, Any]) -> tuple[CoachSettings, list[str]]:
        """Apply a validated partial update; returns the new settings and the changed fields."""
        current = await self.load_settings()
        new = merge(current, changes)
        return new, await self.save_settings(current, new)

    async def update_fast_lane(
        self, changes: dict[str, Any], *, add: list[str], remove: list[str]
    ) -> list[str]:
        """Change the fast-lane settings and members; returns the changed setting fields.
        Raises UnknownLearners (and changes nothing) if a learner to add does not exist: an
        unknown id would sit in the set forever."""
        if add:
            async with self.redis.pipeline(transaction=False) as pipe:
                for learner in add:
                    pipe.exists(self.keys.learner_state(learner))
                found = await pipe.execute()
            missing = [x for x, f in zip(add, found, strict=True) if not f]
            if missing:
                raise UnknownLearners(missing)
        _, changed = await self.update_settings({"fastLane": changes})
        if add or remove:
            # One MULTI/EXEC: the membership change of one call lands together.
            async with self.redis.pipeline(transaction=True) as pipe:
                if add:
                    pipe.sadd(self.keys.coach_fastlane, *add)
                if remove:
                    pipe.srem(self.keys.coach_fastlane, *remove)
                await pipe.execute()
        return changed

    # ---- the loop ------------------------------------------------------------------------------
    async def loop_inputs(self) -> tuple[CoachSettings, bool, str | None]:
        """(settings, whether the loop is active, the recorded training outage) in one trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.coach_settings)
            pipe.hmget(self.keys.coach_state, [ACTIVE, outage_field("training")])
            raw, (active, outage) = await pipe.execute()
        return from_fields(raw).settings, active == "1", outage

    async def set_active(self, active: bool, action: str) -> None:
        fields = {ACTIVE: "1" if active else "0", **action_fields(action)}
        await self.redis.hset(self.keys.coach_state, mapping=field_map(fields))

    async def note_action(self, action: str) -> None:
        """The leader's lastAction (fenced)."""
        await self._fenced(
            lambda pipe: pipe.hset(self.keys.coach_state, mapping=field_map(action_fields(action)))
        )

    async def promote_due(self, at_ms: int) -> int:
        """Move ready learners whose review is due back into the queue (spaced repetition);
        fenced inside the script."""
        moved = int(
            await self._promote_due(
                keys=[self.keys.coach_ready, self.keys.coach_queue, self.keys.coach_fence],
                args=[at_ms, PROMOTE_LIMIT, self._token()],
            )
        )
        if moved < 0:
            raise Fenced("promote_due refused: a newer coach lease holder exists")
        return moved

    async def pick(self, count: int, *, use_fast_lane: bool = True) -> list[Pick]:
        """The `count` learners with the lowest pass, and whether each is in the fast lane."""
        head = scored(await self.redis.zrange(self.keys.coach_queue, 0, count - 1, withscores=True))
        if not head:
            return []
        if use_fast_lane:
            flags = await self.redis.smismember(
                self.keys.coach_fastlane, [learner for learner, _ in head]
            )
        else:
            flags = [0] * len(head)
        return [
            Pick(learner, score, bool(f)) for (learner, score), f in zip(head, flags, strict=True)
        ]

    def queue_advance(self, pipe: Pipeline, picks: Sequence[Pick], weight: float) -> None:
        """Add the pass advances to a pipeline. `ZADD XX INCR`: a learner the commit script
        removed meanwhile (it became ready) is not re-added."""
        for p in picks:
            pipe.zadd(
                self.keys.coach_queue, {p.learner: stride(p.fast, weight)}, xx=True, incr=True
            )

    async def record_tick(self, result: TickResult) -> None:
        """Everything a tick changes, in one fenced MULTI/EXEC (all or nothing; Fenced when a
        newer leader exists)."""
        state_fields = {
            **action_fields(result.action),
            LAST_STATUS: orjson.dumps(result.summary).decode(),
        }
        if result.outage_started is not None:
            state_fields[outage_field("training")] = outage_value(
                result.at_ms, result.outage_started
            )

        def fill(pipe: Pipeline) -> None:
            self._count_rounds(pipe, result.rounds, result.at_ms / 1000, CounterName.ROUNDS_RUN)
            pipe.hincrby(self.keys.coach_stats, CounterName.TICKS, 1)
            if result.learner_errors:
                pipe.hincrby(
                    self.keys.coach_stats, CounterName.LEARNER_ERRORS, result.learner_errors
                )
            if result.failed_calls:
                pipe.hincrby(self.keys.coach_stats, CounterName.FAILED_CALLS, result.failed_calls)
            if result.coached:
                pipe.zadd(self.keys.coach_coached, dict.fromkeys(result.coached, result.at_ms))
            # Pruned every tick, so the set holds about one minute of coached learners.
            pipe.zremrangebyscore(
                self.keys.coach_coached, "-inf", result.at_ms - COVERAGE_WINDOW_MS
            )
            self.queue_advance(pipe, result.advanced, result.weight)
            pipe.hset(self.keys.coach_state, mapping=field_map(state_fields))
            if result.outage_over:
                pipe.hdel(self.keys.coach_state, outage_field("training"))

        await self._fenced(fill)

    async def record_boost(self, rounds: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            self._count_rounds(pipe, rounds, now_ms() / 1000, CounterName.BOOST_ROUNDS)
            await pipe.execute()

    def _count_rounds(self, pipe: Pipeline, rounds: int, now_s: float, counter: str) -> None:
        """Add `rounds` to `counter` and to this second's throughput."""
        if rounds <= 0:
            return
        key = self.keys.coach_throughput(int(now_s))
        pipe.hincrby(self.keys.coach_stats, counter, rounds)
        pipe.incrby(key, rounds)
        pipe.expire(key, THROUGHPUT_TTL_S)

    # ---- the meta trigger's consumer group ---------------------------------------------------
    async def ensure_meta_group(self) -> None:
        """Create the group at id 0 (once; BUSYGROUP afterwards), so readiness events appended
        while no coach was running are served when one starts."""
        try:
            await self.redis.xgroup_create(self.keys.stream_meta, META_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_meta_events(self, consumer: str, *, count: int, block_ms: int) -> list[Any]:
        """New entries for `consumer`: [(entry id, fields), …]."""
        response = await self.redis.xreadgroup(
            META_GROUP, consumer, {self.keys.stream_meta: ">"}, count=count, block=block_ms
        )
        # The fleet's clients speak RESP2: [[stream, [(id, fields), …]], …], or nil when BLOCK
        # timed out; redis-py's annotation also admits RESP3's dict.
        streams = cast("list[list[Any]] | None", response)
        return [entry for _stream, entries in streams or [] for entry in entries]

    async def claim_meta_events(
        self, consumer: str, *, min_idle_ms: int, start: str, count: int
    ) -> tuple[str, list[Any]]:
        """One XAUTOCLAIM page: (next start id, entries); a trimmed entry has fields None."""
        result = await self.redis.xautoclaim(
            self.keys.stream_meta,
            META_GROUP,
            consumer,
            min_idle_time=min_idle_ms,
            start_id=start,
            count=count,
        )
        return result[0], result[1]

    async def ack_meta_events(self, entry_ids: Sequence[str]) -> None:
        await self.redis.xack(self.keys.stream_meta, META_GROUP, *entry_ids)

    async def meta_consumers(self) -> list[dict[str, Any]]:
        return await self.redis.xinfo_consumers(self.keys.stream_meta, META_GROUP)

    async def delete_meta_consumers(self, names: Sequence[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.xgroup_delconsumer(self.keys.stream_meta, META_GROUP, name)
            await pipe.execute()

    async def record_meta_served(self, served: Sequence[MetaServed], action: str) -> None:
        """Delays recorded (fenced, one MULTI/EXEC), then the entries acknowledged; the meta
        outage, if one was recorded (perhaps by a previous leader), is over. A crash between
        the two leaves the entries pending: served again later, which meta de-duplicates."""

        def fill(pipe: Pipeline) -> None:
            for s in served:
                value = round(s.delay_ms, 3)
                pipe.lpush(self.keys.coach_meta_delays, value)
                pipe.ltrim(self.keys.coach_meta_delays, 0, META_DELAYS_KEPT - 1)
                pipe.hset(self.keys.coach_meta_delay_by_learner, s.learner, value)
                pipe.hincrby(self.keys.coach_stats, CounterName.META_TRIGGERS, 1)
            pipe.hset(self.keys.coach_state, LAST_META_ACTION, action)
            pipe.hdel(self.keys.coach_state, outage_field("meta"))

        await self._fenced(fill)
        if served:
            await self.ack_meta_events([s.entry_id for s in served])

    async def record_meta_dropped(self, entry_id: str, action: str) -> None:
        """A trigger that can never succeed: counted as a failure (fenced), then acknowledged."""

        def fill(pipe: Pipeline) -> None:
            pipe.hincrby(self.keys.coach_stats, CounterName.META_FAILURES, 1)
            pipe.hset(self.keys.coach_state, LAST_META_ACTION, action)

        await self._fenced(fill)
        await self.ack_meta_events([entry_id])

    async def note_meta_action(self, action: str) -> None:
        await self._fenced(lambda pipe: pipe.hset(self.keys.coach_state, LAST_META_ACTION, action))

    async def record_meta_outage(self, since_ms: int, error: str) -> None:
        fields = {
            outage_field("meta"): outage_value(since_ms, error),
            **action_fields(f"meta unavailable: {error}"),
        }
        await self._fenced(lambda pipe: pipe.hset(self.keys.coach_state, mapping=field_map(fields)))

    # ---- the status ----------------------------------------------------------------------------
    async def read_status(self) -> StatusReading:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.coach_state)
            pipe.hgetall(self.keys.coach_stats)
            pipe.zcard(self.keys.coach_ready)
            pipe.scard(self.keys.coach_fastlane)
            pipe.srandmember(self.keys.coach_fastlane, FASTLANE_SAMPLE)
            pipe.get(self.keys.coach_lease)
            state, counters, ready, fast_count, fast_sample, holder = await pipe.execute()
        return StatusReading(
            state, counters, int(ready), int(fast_count), list(fast_sample or []), holder
        )

    async def rounds_per_min(self, now_s: float | None = None) -> int:
        now = int(now_s if now_s is not None else now_ms() / 1000)
        names = [
            self.keys.coach_throughput(s) for s in range(now - THROUGHPUT_WINDOW_S + 1, now + 1)
        ]
        return sum(int(v) for v in await self.redis.mget(names) if v)

    async def coverage(self, at_ms: int | None = None) -> dict[str, Any]:
        """Share of the learners needing coaching (the queue) that were coached in the last
        minute.

        Redis 6.2 has no ZINTERCARD, so the work is bounded by sampling from the queue side: the
        whole queue when it holds at most COVERAGE_SAMPLE learners, else a uniform random sample
        (ZRANDMEMBER); ZMSCORE against `coach:coached` tells which were coached since a minute
        ago. (Sampling the coached set instead would be biased: its oldest members are the ones
        most likely to have become ready and left the queue.)"""
        now = at_ms if at_ms is not None else now_ms()
        since = now - COVERAGE_WINDOW_MS
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.coach_queue)
            pipe.zcount(self.keys.coach_coached, since, "+inf")
            needing, coached = await pipe.execute()
        needing, coached = int(needing), int(coached)
        if needing == 0:
            # 0 of 0 is not a share (reports answers None too).
            return {"ratio": None, "needing": 0, "coachedLastMinute": coached, "estimated": False}
        estimated = needing > COVERAGE_SAMPLE
        if estimated:
            sample = texts(await self.redis.zrandmember(self.keys.coach_queue, COVERAGE_SAMPLE))
        else:
            sample = texts(await self.redis.zrange(self.keys.coach_queue, 0, COVERAGE_SAMPLE - 1))
        if not sample:
            return {"ratio": None, "needing": 0, "coachedLastMinute": coached, "estimated": False}
        scores = await self.redis.zmscore(self.keys.coach_coached, sample)
        hits = sum(1 for s in scores if s is not None and s >= since)
        return {
            "ratio": round(hits / len(sample), 4),
            "needing": needing,
            "coachedLastMinute": coached,
            "estimated": estimated,
        }

    async def meta_delays(self) -> dict[str, Any]:
        raw = await self.redis.lrange(self.keys.coach_meta_delays, 0, META_DELAYS_KEPT - 1)
        values = [float(v) for v in raw]
        ordered = sorted(values)
        return {
            "p50": nearest_rank(ordered, 50),
            "p99": nearest_rank(ordered, 99),
            "last": values[0] if values else None,
            "samples": len(values),
        }
