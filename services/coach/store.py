"""Redis access of the coach: the one module that knows its keys' hash fields.

Per shard (the shard's hash tag, shared/keys.py): the queue of learners needing coaching and the
reviews waiting (`keys.coach_queue(s)`, `keys.coach_ready(s)`, see scheduler), the fast lane's
pins in and out and its automatic members (`keys.coach_fastlane(s)`, `coach_fastlane_out(s)`,
`coach_fastlane_auto(s)`; see settings_store.FastLaneSettings), the learners coached in the last minute
(`keys.coach_coached(s)`) and the coach's consumer group on `keys.stream_meta(s)`. A replica
works on the shards it owns (shared/shard_leases.py).

Fleet-wide (the `{coach}` tag): the settings (one field per setting, see settings_store), the
state (`active` persists there, so a restarted coach resumes on its own and a stop sent to any
replica stops them all; `lastAction`, `lastStatus`, `lastMetaAction` and the outages), the
counters (`keys.coach_stats`, HINCRBY), the throughput as per-second counters and the meta
trigger delays. Every replica answers the same status from them.

Fencing. The writes for a shard (a tick's coached set and pass advances, due reviews moved back
into the queue) carry the replica's fencing token of that shard and are refused, writing
nothing for that shard, once another replica has acquired it since: the record_shard and
promote_due scripts check the shard's fence in the same atomic step (one slot). The fleet-wide
keys are not fenced per shard, and need not be: the counters are increments of what training
actually committed (training refuses a stale owner's rounds with its own fence check, so they
are never counted), increments from several replicas add up in any order, and the state fields
are notes of the last thing some replica did (last writer wins, which is what they mean).
The meta stream's XACKs follow the work they acknowledge: a replica that served an entry may
acknowledge it even after losing the shard (it was served); one that did not leaves it
pending, and the shard's new owner claims it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import orjson
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from services.coach.scheduler import Pick, PinChanges, stride
from services.coach.settings_store import CoachSettings, from_fields, merge, to_fields
from services.coach.tick import TickResult
from shared import capped_log
from shared.clock import now_ms
from shared.events import COACH_META_GROUP
from shared.keys import Keys
from shared.logging import get_logger
from shared.percentiles import nearest_rank
from shared.redis_types import FleetRedis, field_map, scored, text_map, texts
from shared.scripts import ScriptCall, evalsha_pipelined, lua_source, script_source
from shared.shards import ShardOwnership

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
# Completed boosts kept for the Phase 3 gate (it judges the newest few).
BOOSTS_KEPT = 50
FASTLANE_SAMPLE = 50  # fast-lane members listed by the status (GET fast-lane lists more)
FASTLANE_LIST = 500  # members of each kind listed by GET fast-lane
PROMOTE_LIMIT = 1000  # due reviews moved back into the queue per tick (bounded work)
META_GROUP = COACH_META_GROUP  # the coach's consumer group on the meta stream


def action_fields(action: str, at_ms: int | None = None) -> dict[str, str]:
    return {LAST_ACTION: action, LAST_ACTION_AT: str(now_ms() if at_ms is None else at_ms)}


def outage_field(service: str) -> str:
    return OUTAGE_PREFIX + service


def outage_value(since_ms: int, error: str) -> str:
    return orjson.dumps({"since": since_ms, "error": error[:300]}).decode()


class UnknownLearners(Exception):
    """Learners asked to be pinned into or out of the fast lane that do not exist."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"unknown learners: {missing[:5]}")
        self.missing = missing


# The pin changes' lock (`keys.coach_pins_lock`): held for one change (a read and two round trips
# of writes), so 5 s is far beyond it; a holder that died lets go when it lapses, and a caller
# waits past one lapse, so a dead holder delays a pin change but never fails it.
PINS_LOCK_MS = 5_000
PINS_LOCK_WAIT_S = 6.0
PINS_LOCK_POLL_S = 0.02


class PinsBusy(Exception):
    """Another pin change kept the pins' lock for longer than PINS_LOCK_WAIT_S."""


class TooManyPins(Exception):
    """Pins beyond `fastLane.maxPinned` (pins in and out together)."""

    def __init__(self, pinned: int, limit: int) -> None:
        super().__init__(f"{pinned} pins would exceed the bound of {limit}")
        self.pinned = pinned
        self.limit = limit


@dataclass(frozen=True, slots=True)
class FastLaneMembers:
    """Who is in the fast lane (or pinned out of it), as far as listed: each list holds at most
    `FASTLANE_LIST` ids, the counts are exact."""

    pinned: list[str]
    excluded: list[str]
    auto: list[tuple[str, int]]  # (learner, entered at ms): members until entered + window
    pinned_count: int
    excluded_count: int
    auto_count: int


@dataclass(frozen=True, slots=True)
class MetaServed:
    """A readiness trigger meta served: its stream entry, and the delay from commit to served."""

    entry_id: str
    learner: str
    round_id: int
    delay_ms: float
    shard: int


@dataclass(frozen=True, slots=True)
class StatusReading:
    """The coach's state and counters as the status document shows them (one round trip)."""

    state: dict[str, str]
    counters: dict[str, str]
    ready: int
    replicas: int  # live coach replicas (members whose heartbeat has not expired)

    @property
    def active(self) -> bool:
        return self.state.get(ACTIVE) == "1"

    def counter(self, name: CounterName) -> int:
        return int(self.counters.get(name, 0))

    def outage(self, service: str) -> str | None:
        return self.state.get(outage_field(service))


class CoachStore:
    def __init__(
        self, redis: FleetRedis, keys: Keys, ownership: ShardOwnership | None = None
    ) -> None:
        """`ownership`: the replica's shard leases, whose tokens the writes for a shard carry;
        None writes them unfenced (a tool or test that is not a replica of the running coach)."""
        self.redis = redis
        self.keys = keys
        self.ownership = ownership
        self._promote_due = redis.register_script(lua_source(__package__, "promote_due"))
        self._record_shard = redis.register_script(lua_source(__package__, "record_shard"))
        self._fastlane_pins = redis.register_script(lua_source(__package__, "fastlane_pins"))
        self._lease_release = redis.register_script(script_source("lease_release"))

    # ---- fencing -------------------------------------------------------------------------------
    def token(self, shard: int) -> str:
        """The fencing token of `shard` the scripts check; '' writes unfenced (no ownership, or
        one whose tokens are None: a single owner of every shard, shared.shards.AllShards).
        Shard leases always give a token (0 for a shard never held, which no fence equals)."""
        if self.ownership is None:
            return ""
        token = self.ownership.token(shard)
        return "" if token is None else str(token)

    async def _each(self, script: AsyncScript, calls: list[ScriptCall]) -> list[Any]:
        """One pipelined round trip of `script` over `calls` (one per shard); replies in order."""
        return await evalsha_pipelined(self.redis, script, calls)

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

    async def update_fast_lane(self, changes: dict[str, Any], pins: PinChanges) -> list[str]:
        """Change the fast-lane settings and pins; returns the changed setting fields. Checks
        everything before the first write, so a refused call changes nothing: UnknownLearners
        if a learner to pin in or out does not exist (an unknown id would sit in a set forever),
        TooManyPins if the pins would exceed `maxPinned` (this call's value, if it sets one).

        Atomicity: each shard's pins change in one script (fastlane_pins.lua: a learner is in
        one of pinned, pinned out, automatic); the shards' scripts go in one round trip but are
        not one step together, and need not be: each learner's pin stands alone. The bound is
        exact: a call that adds pins holds the pins' lock (`_pins_locked`) from the count it is
        checked against until its writes are in, so no other call adds pins in between (one
        that only drops pins needs no lock: it can only make the count smaller)."""
        current = await self.load_settings()
        new = merge(current, {"fastLane": changes})
        named = [*pins.pin, *pins.exclude]
        if named:
            async with self.redis.pipeline(transaction=False) as pipe:
                for learner in named:
                    pipe.exists(self.keys.learner_state(learner))
                found = await pipe.execute()
            missing = [x for x, f in zip(named, found, strict=True) if not f]
            if missing:
                raise UnknownLearners(missing)
        if not named:
            return await self._apply_fast_lane(current, new, pins)
        async with self._pins_locked():
            pinned = await self._pins_after(pins)
            if pinned > new.fastLane.maxPinned:
                raise TooManyPins(pinned, new.fastLane.maxPinned)
            return await self._apply_fast_lane(current, new, pins)

    async def _apply_fast_lane(
        self, current: CoachSettings, new: CoachSettings, pins: PinChanges
    ) -> list[str]:
        changed = await self.save_settings(current, new)
        if pins:
            pin, unpin, exclude = (self._by_shard(x) for x in (pins.pin, pins.unpin, pins.exclude))
            calls: list[ScriptCall] = []
            for shard in sorted({*pin, *unpin, *exclude}):
                a, u, e = pin.get(shard, []), unpin.get(shard, []), exclude.get(shard, [])
                k = self.keys
                calls.append(
                    (
                        [
                            k.coach_fastlane(shard),
                            k.coach_fastlane_out(shard),
                            k.coach_fastlane_auto(shard),
                        ],
                        [len(a), len(u), len(e), *a, *u, *e],
                    )
                )
            await self._each(self._fastlane_pins, calls)
        return changed

    @contextlib.asynccontextmanager
    async def _pins_locked(self) -> AsyncIterator[None]:
        """Hold the pins' lock (SET NX PX with a token of our own; given back only if still
        ours), waiting at most PINS_LOCK_WAIT_S for it; PinsBusy after that."""
        token = secrets.token_hex(8)
        deadline = time.monotonic() + PINS_LOCK_WAIT_S
        # Bounded by the deadline.
        while not await self.redis.set(self.keys.coach_pins_lock, token, nx=True, px=PINS_LOCK_MS):
            if time.monotonic() >= deadline:
                raise PinsBusy()
            await asyncio.sleep(PINS_LOCK_POLL_S)
        try:
            yield
        finally:
            await self._lease_release(keys=[self.keys.coach_pins_lock], args=[token])

    async def _pins_after(self, pins: PinChanges) -> int:
        """How many learners would be pinned (in or out) after `pins`: the shards' counts now,
        plus the learners this call pins that are pinned neither way yet, less those whose pin
        it drops."""
        shards = list(self.keys.all_shards())
        grouped = self._by_shard(pins.all())
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.scard(self.keys.coach_fastlane(shard))
                pipe.scard(self.keys.coach_fastlane_out(shard))
            for shard, learners in grouped.items():
                pipe.smismember(self.keys.coach_fastlane(shard), learners)
                pipe.smismember(self.keys.coach_fastlane_out(shard), learners)
            replies = await pipe.execute()
        total = sum(int(n) for n in replies[: 2 * len(shards)])
        flags = replies[2 * len(shards) :]
        pinned_now: set[str] = set()
        for i, learners in enumerate(grouped.values()):
            ins, outs = flags[2 * i], flags[2 * i + 1]
            pinned_now.update(x for x, a, b in zip(learners, ins, outs, strict=True) if a or b)
        added = sum(1 for x in {*pins.pin, *pins.exclude} if x not in pinned_now)
        dropped = sum(1 for x in set(pins.unpin) if x in pinned_now)
        return total + added - dropped

    async def fast_lane_members(self, window_s: int, at_ms: int | None = None) -> FastLaneMembers:
        """The pins, the exclusions and the automatic members (entered less than `window_s`
        ago) over every shard: counts in one round trip, then up to FASTLANE_LIST ids of each
        kind from the shards that have some."""
        now = at_ms if at_ms is not None else now_ms()
        since = f"({now - window_s * 1000}"
        shards = list(self.keys.all_shards())
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.scard(self.keys.coach_fastlane(shard))
                pipe.scard(self.keys.coach_fastlane_out(shard))
                pipe.zcount(self.keys.coach_fastlane_auto(shard), since, "+inf")
            counts = [int(n) for n in await pipe.execute()]
        sizes = [counts[0::3], counts[1::3], counts[2::3]]
        async with self.redis.pipeline(transaction=False) as pipe:
            wanted: list[tuple[int, int]] = []  # (kind, shard) in the order sent
            for kind, per_shard in enumerate(sizes):
                for shard, n in zip(shards, per_shard, strict=True):
                    if not n:
                        continue
                    wanted.append((kind, shard))
                    if kind == 0:
                        pipe.srandmember(self.keys.coach_fastlane(shard), FASTLANE_LIST)
                    elif kind == 1:
                        pipe.srandmember(self.keys.coach_fastlane_out(shard), FASTLANE_LIST)
                    else:
                        pipe.zrange(
                            self.keys.coach_fastlane_auto(shard),
                            since,
                            "+inf",
                            byscore=True,
                            offset=0,
                            num=FASTLANE_LIST,
                            withscores=True,
                        )
            replies = await pipe.execute() if wanted else []
        pinned: list[str] = []
        excluded: list[str] = []
        auto: list[tuple[str, int]] = []
        for (kind, _), reply in zip(wanted, replies, strict=True):
            if kind == 0:
                pinned.extend(texts(reply or []))
            elif kind == 1:
                excluded.extend(texts(reply or []))
            else:
                auto.extend((x, int(score)) for x, score in scored(reply))
        return FastLaneMembers(
            sorted(pinned)[:FASTLANE_LIST],
            sorted(excluded)[:FASTLANE_LIST],
            sorted(auto, key=lambda m: (m[1], m[0]))[:FASTLANE_LIST],
            sum(sizes[0]),
            sum(sizes[1]),
            sum(sizes[2]),
        )

    def _by_shard(self, learners: Iterable[str]) -> dict[int, list[str]]:
        grouped: dict[int, list[str]] = {}
        for learner in learners:
            grouped.setdefault(self.keys.shard_of(learner), []).append(learner)
        return grouped

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
        """This replica's lastAction (a fleet-wide note: the last one written shows)."""
        await self.redis.hset(self.keys.coach_state, mapping=field_map(action_fields(action)))

    async def promote_due(self, at_ms: int, shards: Iterable[int]) -> tuple[int, list[int]]:
        """Move ready learners whose review is due back into the queues of `shards` (spaced
        repetition), one fenced script per shard in one round trip. Returns (learners moved,
        the shards refused because a newer lease holder exists)."""
        calls: list[ScriptCall] = []
        order: list[int] = []
        for shard in sorted(shards):
            k = self.keys
            calls.append(
                (
                    [k.coach_ready(shard), k.coach_queue(shard), k.coach_fence(shard)],
                    [at_ms, PROMOTE_LIMIT, self.token(shard)],
                )
            )
            order.append(shard)
        moved = 0
        fenced: list[int] = []
        for shard, reply in zip(order, await self._each(self._promote_due, calls), strict=True):
            if int(reply) < 0:
                fenced.append(shard)
            else:
                moved += int(reply)
        return moved, fenced

    async def queued(self, shards: Iterable[int]) -> int:
        """How many learners wait in the queues of `shards` (one round trip)."""
        owned = sorted(shards)
        if not owned:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in owned:
                pipe.zcard(self.keys.coach_queue(shard))
            return sum(int(n) for n in await pipe.execute())

    async def pick(
        self,
        count: int,
        shards: Iterable[int],
        *,
        use_fast_lane: bool = True,
        auto_window_s: int | None = None,
        at_ms: int | None = None,
    ) -> list[Pick]:
        """The `count` learners with the lowest pass over the queues of `shards`, and whether
        each is in the fast lane: pinned in, or (with `auto_window_s`, the automatic rule's
        window) an automatic member that entered less than that long ago and is not pinned out.
        Passes of different shards are comparable (a learner joins at its queue's head pass,
        and every coached learner advances by its stride), so merging the heads by pass
        schedules the replica's shards as one queue: weighted fairly across the shards and
        between the fast and the normal lane. One round trip for the heads, one for the
        fast-lane flags."""
        owned = sorted(shards)
        if count <= 0 or not owned:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in owned:
                pipe.zrange(self.keys.coach_queue(shard), 0, count - 1, withscores=True)
            heads = await pipe.execute()
        merged = heapq.nsmallest(
            count,
            (
                (score, learner, shard)
                for shard, head in zip(owned, heads, strict=True)
                for learner, score in scored(head)
            ),
        )
        if not merged:
            return []
        fast: set[str] = set()
        if use_fast_lane:
            fast = await self._fast_of(merged, auto_window_s, at_ms)
        return [Pick(learner, score, learner in fast, shard) for score, learner, shard in merged]

    async def _fast_of(
        self, merged: list[tuple[float, str, int]], auto_window_s: int | None, at_ms: int | None
    ) -> set[str]:
        by_shard: dict[int, list[str]] = {}
        for _, learner, shard in merged:
            by_shard.setdefault(shard, []).append(learner)
        auto = auto_window_s is not None
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard, learners in by_shard.items():
                pipe.smismember(self.keys.coach_fastlane(shard), learners)
                if auto:
                    pipe.smismember(self.keys.coach_fastlane_out(shard), learners)
                    pipe.zmscore(self.keys.coach_fastlane_auto(shard), learners)
            flags = await pipe.execute()
        fast: set[str] = set()
        step = 3 if auto else 1
        since = (at_ms if at_ms is not None else now_ms()) - (auto_window_s or 0) * 1000
        for i, learners in enumerate(by_shard.values()):
            pinned = flags[step * i]
            if not auto:
                fast.update(x for x, f in zip(learners, pinned, strict=True) if f)
                continue
            out, entered = flags[step * i + 1], flags[step * i + 2]
            for x, p, o, e in zip(learners, pinned, out, entered, strict=True):
                if p or (not o and e is not None and float(e) > since):
                    fast.add(x)
        return fast

    async def record_tick(self, result: TickResult, shards: Iterable[int]) -> list[int]:
        """Everything a tick changes. Per shard of `shards` (the replica's owned shards, so each
        one's coached set is pruned), one fenced record_shard script, all in one round trip;
        then the fleet-wide counters and state in one pipeline (not fenced, see the module
        docstring). Returns the shards whose record was refused (a newer owner holds them)."""
        coached: dict[int, list[str]] = {s: [] for s in shards}
        advanced: dict[int, list[Pick]] = {s: [] for s in coached}
        for learner in result.coached:
            coached.setdefault(self.keys.shard_of(learner), []).append(learner)
        for p in result.advanced:
            advanced.setdefault(p.shard, []).append(p)
        ready, close = self._by_shard(result.ready), self._by_shard(result.close)
        # Each shard admits its share of the fleet-wide bound on automatic members.
        cap = -(-result.auto_max // self.keys.shards)
        calls: list[ScriptCall] = []
        order = sorted(set(coached) | set(advanced))
        for shard in order:
            k = self.keys
            members = coached.get(shard, [])
            made_ready, near = ready.get(shard, []), close.get(shard, [])
            args: list[Any] = [
                self.token(shard),
                result.at_ms,
                result.at_ms - COVERAGE_WINDOW_MS,
                result.window_s * 1000,
                cap,
                len(members),
                len(made_ready),
                len(near),
                *members,
                *made_ready,
                *near,
            ]
            for p in advanced.get(shard, []):
                args += [
                    p.learner,
                    stride(p.fast, result.weight, result.rounds_of.get(p.learner, 1)),
                ]
            keys = [
                k.coach_fence(shard),
                k.coach_queue(shard),
                k.coach_coached(shard),
                k.coach_fastlane_auto(shard),
                k.coach_fastlane(shard),
                k.coach_fastlane_out(shard),
            ]
            calls.append((keys, args))
        replies = await self._each(self._record_shard, calls)
        fenced = [shard for shard, r in zip(order, replies, strict=True) if int(r) < 0]

        state_fields = {
            **action_fields(result.action),
            LAST_STATUS: orjson.dumps(result.summary).decode(),
        }
        if result.outage_started is not None:
            state_fields[outage_field("training")] = outage_value(
                result.at_ms, result.outage_started
            )
        # One MULTI/EXEC: the tick's counters and its note land together ({coach}: one slot).
        async with self.redis.pipeline(transaction=True) as pipe:
            self._count_rounds(pipe, result.rounds, result.at_ms / 1000, CounterName.ROUNDS_RUN)
            pipe.hincrby(self.keys.coach_stats, CounterName.TICKS, 1)
            if result.learner_errors:
                pipe.hincrby(
                    self.keys.coach_stats, CounterName.LEARNER_ERRORS, result.learner_errors
                )
            if result.failed_calls:
                pipe.hincrby(self.keys.coach_stats, CounterName.FAILED_CALLS, result.failed_calls)
            pipe.hset(self.keys.coach_state, mapping=field_map(state_fields))
            if result.outage_over:
                pipe.hdel(self.keys.coach_state, outage_field("training"))
            await pipe.execute()
        return fenced

    async def record_boost(self, rounds: int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            self._count_rounds(pipe, rounds, now_ms() / 1000, CounterName.BOOST_ROUNDS)
            await pipe.execute()

    def _count_rounds(
        self, pipe: Pipeline | ClusterPipeline, rounds: int, now_s: float, counter: str
    ) -> None:
        """Add `rounds` to `counter` and to this second's throughput."""
        if rounds <= 0:
            return
        key = self.keys.coach_throughput(int(now_s))
        pipe.hincrby(self.keys.coach_stats, counter, rounds)
        pipe.incrby(key, rounds)
        pipe.expire(key, THROUGHPUT_TTL_S)

    # ---- the meta trigger's consumer groups (one per shard's meta stream) ---------------------
    async def ensure_meta_group(self, shard: int) -> None:
        """Create the shard's group at id 0 (once; BUSYGROUP afterwards), so readiness events
        appended while no coach was running are served when one starts."""
        try:
            await self.redis.xgroup_create(
                self.keys.stream_meta(shard), META_GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_meta_events(
        self, shard: int, consumer: str, *, count: int, block_ms: int | None
    ) -> list[Any]:
        """New entries of the shard's meta stream for `consumer`: [(entry id, fields), …];
        `block_ms` None answers at once."""
        response = await self.redis.xreadgroup(
            META_GROUP, consumer, {self.keys.stream_meta(shard): ">"}, count=count, block=block_ms
        )
        # The fleet's clients speak RESP2: [[stream, [(id, fields), …]], …], or nil when BLOCK
        # timed out; redis-py's annotation also admits RESP3's dict.
        streams = cast("list[list[Any]] | None", response)
        return [entry for _stream, entries in streams or [] for entry in entries]

    async def claim_meta_events(
        self, shard: int, consumer: str, *, min_idle_ms: int, start: str, count: int
    ) -> tuple[str, list[Any]]:
        """One XAUTOCLAIM page: (next start id, entries); a trimmed entry has fields None."""
        result = await self.redis.xautoclaim(
            self.keys.stream_meta(shard),
            META_GROUP,
            consumer,
            min_idle_time=min_idle_ms,
            start_id=start,
            count=count,
        )
        return result[0], result[1]

    async def ack_meta_events(self, shard: int, entry_ids: Sequence[str]) -> None:
        await self.redis.xack(self.keys.stream_meta(shard), META_GROUP, *entry_ids)

    async def meta_consumers(self, shard: int) -> list[dict[str, Any]]:
        return await self.redis.xinfo_consumers(self.keys.stream_meta(shard), META_GROUP)

    async def delete_meta_consumers(self, shard: int, names: Sequence[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.xgroup_delconsumer(self.keys.stream_meta(shard), META_GROUP, name)
            await pipe.execute()

    async def record_meta_served(self, served: Sequence[MetaServed], action: str) -> None:
        """Delays recorded (one MULTI/EXEC on the `{coach}` keys), then the entries acknowledged
        on their shards' streams; the meta outage, if one was recorded (perhaps by another
        replica), is over. A crash between the two leaves the entries pending: served again
        later, which meta de-duplicates."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for s in served:
                value = round(s.delay_ms, 3)
                pipe.lpush(self.keys.coach_meta_delays, value)
                pipe.ltrim(self.keys.coach_meta_delays, 0, META_DELAYS_KEPT - 1)
                pipe.hset(self.keys.coach_meta_delay_by_learner, s.learner, value)
                pipe.hincrby(self.keys.coach_stats, CounterName.META_TRIGGERS, 1)
            pipe.hset(self.keys.coach_state, LAST_META_ACTION, action)
            pipe.hdel(self.keys.coach_state, outage_field("meta"))
            await pipe.execute()
        by_shard: dict[int, list[str]] = {}
        for s in served:
            by_shard.setdefault(s.shard, []).append(s.entry_id)
        if by_shard:
            async with self.redis.pipeline(transaction=False) as pipe:
                for shard, ids in by_shard.items():
                    pipe.xack(self.keys.stream_meta(shard), META_GROUP, *ids)
                await pipe.execute()

    async def record_meta_dropped(self, shard: int, entry_id: str, action: str) -> None:
        """A trigger that can never succeed: counted as a failure, then acknowledged."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(self.keys.coach_stats, CounterName.META_FAILURES, 1)
            pipe.hset(self.keys.coach_state, LAST_META_ACTION, action)
            await pipe.execute()
        await self.ack_meta_events(shard, [entry_id])

    async def note_meta_action(self, action: str) -> None:
        await self.redis.hset(self.keys.coach_state, LAST_META_ACTION, action)

    async def record_meta_outage(self, since_ms: int, error: str) -> None:
        fields = {
            outage_field("meta"): outage_value(since_ms, error),
            **action_fields(f"meta unavailable: {error}"),
        }
        await self.redis.hset(self.keys.coach_state, mapping=field_map(fields))

    # ---- the status (the whole service: every shard, every replica) ---------------------------
    async def read_status(self) -> StatusReading:
        shards = list(self.keys.all_shards())
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.coach_state)
            pipe.hgetall(self.keys.coach_stats)
            pipe.zcount(self.keys.coach_members, now_ms(), "+inf")
            for shard in shards:
                pipe.zcard(self.keys.coach_ready(shard))
            state, counters, replicas, *sizes = await pipe.execute()
        return StatusReading(state, counters, sum(int(n) for n in sizes), int(replicas))

    async def rounds_per_min(self, now_s: float | None = None) -> int:
        now = int(now_s if now_s is not None else now_ms() / 1000)
        names = [
            self.keys.coach_throughput(s) for s in range(now - THROUGHPUT_WINDOW_S + 1, now + 1)
        ]
        return sum(int(v) for v in await self.redis.mget(names) if v)

    async def coverage(self, at_ms: int | None = None) -> dict[str, Any]:
        """Share of the learners needing coaching (the queues) that were coached in the last
        minute, over every shard.

        Redis 6.2 has no ZINTERCARD, so the work is bounded by sampling from the queue side:
        each shard's whole queue when it holds at most its part of COVERAGE_SAMPLE, else a
        uniform random sample of that size (ZRANDMEMBER); ZMSCORE against the shard's coached
        set tells which were coached since a minute ago, and each shard's hit ratio weighs by
        its queue's size. (Sampling the coached sets instead would be biased: their oldest
        members are the ones most likely to have become ready and left the queue.)"""
        now = at_ms if at_ms is not None else now_ms()
        since = now - COVERAGE_WINDOW_MS
        shards = list(self.keys.all_shards())
        per_shard = max(1, COVERAGE_SAMPLE // len(shards))
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.zcard(self.keys.coach_queue(shard))
                pipe.zcount(self.keys.coach_coached(shard), since, "+inf")
            counts = [int(n) for n in await pipe.execute()]
        sizes, coached = counts[0::2], sum(counts[1::2])
        needing = sum(sizes)
        if needing == 0:
            # 0 of 0 is not a share (reports answers None too).
            return {"ratio": None, "needing": 0, "coachedLastMinute": coached, "estimated": False}
        estimated = any(n > per_shard for n in sizes)
        queued = [(s, n) for s, n in zip(shards, sizes, strict=True) if n]
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard, n in queued:
                if n > per_shard:
                    pipe.zrandmember(self.keys.coach_queue(shard), per_shard)
                else:
                    pipe.zrange(self.keys.coach_queue(shard), 0, per_shard - 1)
            samples = [texts(x) for x in await pipe.execute()]
        async with self.redis.pipeline(transaction=False) as pipe:
            for (shard, _), sample in zip(queued, samples, strict=True):
                pipe.zmscore(self.keys.coach_coached(shard), sample or ["-"])
            scores = await pipe.execute()
        weighted = 0.0
        total = 0
        for (_, n), sample, found in zip(queued, samples, scores, strict=True):
            if not sample:
                continue  # emptied since the count
            hits = sum(1 for s in found if s is not None and s >= since)
            weighted += n * hits / len(sample)
            total += n
        if total == 0:
            return {"ratio": None, "needing": 0, "coachedLastMinute": coached, "estimated": False}
        return {
            "ratio": round(weighted / total, 4),
            "needing": needing,
            "coachedLastMinute": coached,
            "estimated": estimated,
        }

    async def record_boost_time(self, at_ms: int, rounds: int, ms: float) -> None:
        """A completed boost's duration, kept for the Phase 3 gate. LPUSH and LTRIM in one
        MULTI: the list never holds more than BOOSTS_KEPT entries."""
        entry = {"at_ms": at_ms, "rounds": rounds, "ms": round(ms, 1)}
        await capped_log.append(self.redis, self.keys.coach_boosts, entry, BOOSTS_KEPT)

    async def recent_boosts(self, count: int = 10) -> list[dict[str, Any]]:
        return await capped_log.newest(self.redis, self.keys.coach_boosts, count, BOOSTS_KEPT)

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
